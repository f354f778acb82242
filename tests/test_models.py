"""Model interface: analytic Jacobians vs autograd, tutorial checkpoint layout, registry."""

import math

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.models import MODELS, ShallowPLRNN, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jacobian_matches_autograd(name):
    torch.manual_seed(3)
    model = build_model(name, M=4, L=9).double()
    with torch.no_grad():
        model.h1.normal_()
    z = torch.randn(6, 4, dtype=torch.float64) * 2
    J = model.jacobian(z)
    assert J.shape == (6, 4, 4)
    for i in range(6):
        auto = torch.autograd.functional.jacobian(lambda v: model.step(v), z[i])
        np.testing.assert_allclose(J[i].detach().numpy(), auto.numpy(), atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_step_shapes_and_parameter_count(name):
    M, L = 3, 7
    model = build_model(name, M=M, L=L)
    assert model.step(torch.zeros(M)).shape == (M,)
    assert model.step(torch.zeros(5, 2, M)).shape == (5, 2, M)
    assert model.n_params == M + M * L + L * M + M + L


def test_tutorial_state_dict_layout_loads():
    """A CNS-2023-style state dict (A, W1, W2, h1, h2) loads and defines the map."""
    M, L = 3, 50
    rng = np.random.default_rng(0)
    state = {
        "A": torch.tensor(rng.uniform(0.5, 0.9, M)),
        "W1": torch.tensor(rng.normal(size=(M, L)) / math.sqrt(L)),
        "W2": torch.tensor(rng.normal(size=(L, M)) / math.sqrt(M)),
        "h1": torch.tensor(rng.normal(size=M)),
        "h2": torch.tensor(rng.normal(size=L)),
    }
    model = ShallowPLRNN(M, L).double()
    model.load_state_dict(state)
    z = rng.normal(size=M)
    expected = (state["A"].numpy() * z + state["W1"].numpy() @ np.maximum(state["W2"].numpy() @ z
                + state["h2"].numpy(), 0) + state["h1"].numpy())
    np.testing.assert_allclose(model.step(torch.tensor(z)).detach().numpy(), expected, atol=1e-12)


def test_norm_bound_bounds_the_jacobian():
    torch.manual_seed(0)
    for name in MODELS:
        model = build_model(name, M=3, L=20).double()
        J = model.jacobian(torch.randn(200, 3, dtype=torch.float64) * 3)
        assert torch.linalg.matrix_norm(J, ord=2).max() <= model.norm_bound() + 1e-12


def test_unknown_model_name():
    with pytest.raises(DsrpipeError, match="unknown model 'PLRNNX'.*shPLRNN"):
        build_model("PLRNNX", M=3, L=4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiled_orbit_kernel_matches_the_models_step(name):
    from dsrpipe.models.kernels import has_orbit_kernel, orbit

    torch.manual_seed(5)
    model = build_model(name, M=3, L=20).double()
    assert has_orbit_kernel(model)
    z0 = torch.randn(3, dtype=torch.float64)
    ref, z = [], z0
    with torch.no_grad():
        for _ in range(300):
            z = model.step(z)
            ref.append(z)
    np.testing.assert_allclose(orbit(model, z0, 300).numpy(), torch.stack(ref).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.generate(z0, 300).numpy(), torch.stack(ref).numpy(), rtol=1e-10, atol=1e-12)
