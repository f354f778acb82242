"""Model interface: analytic Jacobians vs autograd, tutorial checkpoint layout, registry."""

import math

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.models import MODELS, ShallowPLRNN, build_model
from dsrpipe.models.registry import size_arguments

SIZES = {"hidden_dim": 9, "n_bases": 4, "n_relu": 2}


def make(name, M=4, K=0, **sizes):
    torch.manual_seed(3)
    model = build_model(name, M=M, K=K, **size_arguments(name, {**SIZES, **sizes})).double()
    with torch.no_grad():  # move the biases off zero so every region is exercised
        for p in model.parameters():
            if p.ndim == 1 and p.shape[0] == M and not torch.equal(p, model.A):
                p.normal_()
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jacobian_matches_autograd(name):
    model = make(name)
    z = torch.randn(6, 4, dtype=torch.float64) * 2
    J = model.jacobian(z)
    assert J.shape == (6, 4, 4)
    for i in range(6):
        auto = torch.autograd.functional.jacobian(lambda v: model.step(v), z[i])
        np.testing.assert_allclose(J[i].detach().numpy(), auto.numpy(), atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_step_shapes_and_parameter_count(name):
    M, K, L, B, P = 3, 2, 7, 5, 2
    model = make(name, M=M, K=K, hidden_dim=L, n_bases=B, n_relu=P)
    assert model.step(torch.zeros(M, dtype=torch.float64)).shape == (M,)
    assert model.step(torch.zeros(5, 2, M, dtype=torch.float64)).shape == (5, 2, M)
    expected = {
        "PLRNN": M + M * M + M,
        "ALRNN": M + M * M + M,
        "dendPLRNN": M + M * M + M + B + M * B,
        "clipped-dendPLRNN": M + M * M + M + B + M * B,
        "shPLRNN": M + M * L + L * M + M + L,
        "clipped-shPLRNN": M + M * L + L * M + M + L,
    }[name]
    assert model.n_params == expected + M * K
    rebuilt = build_model(name, **model.hyperparameters())
    assert rebuilt.n_params == model.n_params


@pytest.mark.parametrize("name", sorted(MODELS))
def test_external_inputs_add_C_s(name):
    model = make(name, M=3, K=2)
    z = torch.randn(4, 3, dtype=torch.float64)
    s = torch.randn(4, 2, dtype=torch.float64)
    expected = model.step(z) + s @ model.C.detach().T
    np.testing.assert_allclose(model.step(z, s).detach().numpy(), expected.detach().numpy(), atol=1e-13)
    orbit = model.generate(z[0], 5, inputs=s[:, None].expand(4, 1, 2)[:4, 0].repeat(2, 1)[:5])
    assert orbit.shape == (5, 3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_region_affine_form_reproduces_the_map(name):
    """In the region of z the map is affine: F(z) = J z + c with (J, c) = affine(region(z))."""
    model = make(name)
    z = torch.randn(50, 4, dtype=torch.float64) * 2
    code = model.region(z)
    assert code.dtype == torch.bool and code.shape == (50, model.region_size)
    J, c = model.affine(code)
    np.testing.assert_allclose((J @ z.unsqueeze(-1)).squeeze(-1).add(c).detach().numpy(),
                               model.step(z).detach().numpy(), atol=1e-12)
    # a region visited by two states gives the same affine map for both
    one = model.affine(code[0])
    np.testing.assert_allclose(one[0].detach().numpy(), J[0].detach().numpy())


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
        model = make(name, M=3, hidden_dim=20)
        J = model.jacobian(torch.randn(200, 3, dtype=torch.float64) * 3)
        assert torch.linalg.matrix_norm(J, ord=2).max() <= model.norm_bound() + 1e-12


def test_unknown_model_name():
    with pytest.raises(DsrpipeError, match="unknown model 'PLRNNX'.*shPLRNN"):
        build_model("PLRNNX", M=3, L=4)


@pytest.mark.parametrize("M", [3, 9])  # 9: the shallow map's tiled reductions over M (DOT_MIN_M)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiled_orbit_kernel_matches_the_models_step(name, M):
    from dsrpipe.models.kernels import DOT_MIN_M, has_orbit_kernel, orbit

    assert DOT_MIN_M <= 9
    model = make(name, M=M, hidden_dim=20, n_bases=4, n_relu=2)
    assert has_orbit_kernel(model)
    z0 = torch.randn(M, dtype=torch.float64)
    ref, z = [], z0
    with torch.no_grad():
        for _ in range(300):
            z = model.step(z)
            ref.append(z)
    np.testing.assert_allclose(orbit(model, z0, 300).numpy(), torch.stack(ref).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.generate(z0, 300).numpy(), torch.stack(ref).numpy(), rtol=1e-10, atol=1e-12)
