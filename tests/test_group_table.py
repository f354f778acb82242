"""The group table carries each run's invariants (issue 5) and shows diverged runs as such (issue 9):
collect_metrics on synthetic metrics.json files with hand-set values."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.analysis.cycles import eigenvalue_type
from dsrpipe.reporting.group import INVARIANT_COLUMNS, OBJECT_TYPES, add_restart_selection, collect_metrics


def _object(kind: str, order: int = 1) -> dict:
    return {"order": order, "states": [[0.0, 0.0]] * order, "stable": kind.startswith("stable"), "type": kind,
            "eigenvalues_real": [0.5, 0.5], "eigenvalues_imag": [0.0, 0.0], "max_abs_eigenvalue": 0.5}


def _metrics(subject="01", seed=0, **over) -> dict:
    m = {"subject": subject, "model": "shPLRNN", "seed": seed, "dt": 0.01, "d_stsp": 0.3, "d_h": 0.1,
         "pe_20": 0.4, "lyapunov_spectrum": [0.9, 0.0, -14.5], "max_lyapunov": 0.9,
         "kaplan_yorke_dimension": 2.06, "n_params": 100, "train_time_s": 42.5,
         "fixed_points": [_object("saddle"), _object("saddle"), _object("unstable_spiral")],
         "cycles": [_object("saddle", 2), _object("stable_node", 2), _object("saddle", 3)],
         "n_cycles": {"1": 3, "2": 2, "3": 1},
         "attractor_class": "chaotic", "attractor": {"class": "chaotic", "period": 0},
         "n_visited_regions": 17, "basins": {"n_attractors": 2, "n_diverging": 5, "n_inits": 400},
         "n_attractors": 2, "generated_finite": True, "diverged": False, "diverged_stage": None,
         "diverged_at_step": None}
    m.update(over)
    return m


def _diverged(subject="02", seed=0) -> dict:
    """As evaluate writes it for an exploding model."""
    return _metrics(subject, seed, d_stsp=math.inf, d_h=math.inf, pe_20=3.2e6,
                    lyapunov_spectrum=[math.nan] * 3, max_lyapunov=math.nan, kaplan_yorke_dimension=math.nan,
                    fixed_points=[_object("unstable_node")], cycles=[], n_cycles={"1": 1, "2": 0},
                    attractor_class="diverged", attractor={"class": "diverged", "period": 0},
                    n_visited_regions=None, basins={"n_attractors": 0, "n_diverging": 400, "n_inits": 400},
                    n_attractors=0, diverged=True, diverged_stage="generation", diverged_at_step=39)


def _write(tmp_path, name, m):
    p = tmp_path / name
    p.write_text(json.dumps(m))  # NaN/Infinity as evaluate's write_json writes them
    return p


def test_invariant_columns_by_hand(tmp_path):
    df = collect_metrics([_write(tmp_path, "a.json", _metrics()), _write(tmp_path, "b.json", _diverged())])
    ok, div = df.iloc[0], df.iloc[1]
    # fixed points and cycles per type and order
    assert ok["n_fixed_points"] == 3 and ok["n_fixed_points_saddle"] == 2 and ok["n_fixed_points_unstable_spiral"] == 1
    assert ok["n_fixed_points_stable_node"] == 0
    assert ok["n_cycles_2"] == 2 and ok["n_cycles_2_saddle"] == 1 and ok["n_cycles_2_stable_node"] == 1
    assert ok["n_cycles_3"] == 1 and ok["n_cycles_3_saddle"] == 1 and ok["n_cycles_3_stable_node"] == 0
    assert math.isnan(div["n_cycles_3"]) and div["n_cycles_2"] == 0  # run b searched up to order 2 only
    # attractor, regions, basins, time, spectrum
    assert ok["attractor_class"] == "chaotic" and ok["attractor_period"] == 0 and ok["n_visited_regions"] == 17
    assert ok["n_attractors"] == 2 and ok["n_basin_inits_diverging"] == 5 and ok["train_time_s"] == 42.5
    assert list(ok[["lyap_1", "lyap_2", "lyap_3"]]) == [0.9, 0.0, -14.5] and ok["kaplan_yorke_dimension"] == 2.06
    # the diverged run: flagged, its attractor invariants NaN, not huge numbers
    assert not ok["diverged"] and pd.isna(ok["diverged_stage"]) and math.isnan(ok["diverged_at_step"])
    assert div["diverged"] and div["diverged_stage"] == "generation" and div["diverged_at_step"] == 39
    assert div["attractor_class"] == "diverged" and math.isnan(div["n_visited_regions"])
    assert all(math.isnan(div[c]) for c in ("lyap_1", "max_lyapunov", "kaplan_yorke_dimension"))
    assert div["d_stsp"] == math.inf and div["n_attractors"] == 0 and div["n_fixed_points_unstable_node"] == 1
    # column order: identity, scalar metrics, invariants, fixed points, cycles
    cols = list(df.columns)
    assert cols[:3] == ["subject", "model", "seed"]
    assert cols.index("train_time_s") < cols.index("diverged") < cols.index("n_fixed_points")
    assert [c for c in cols if c in INVARIANT_COLUMNS] == list(INVARIANT_COLUMNS)
    assert cols.index("n_fixed_points_non_hyperbolic") < cols.index("n_cycles_2") < cols.index("n_cycles_3")
    assert df["diverged"].dtype == bool


def test_table_round_trips_parquet_with_selection(tmp_path):
    paths = [_write(tmp_path, f"{i}.json", m) for i, m in enumerate([_metrics(seed=0), _metrics(seed=1),
                                                                    _diverged("01", 2)])]
    df = add_restart_selection(collect_metrics(paths), {("01", "shPLRNN", 0): (0.5, 0.1),
                                                        ("01", "shPLRNN", 1): (0.2, 0.1),
                                                        ("01", "shPLRNN", 2): (math.inf, math.inf)})
    assert df["selected"].tolist() == [False, True, False]  # the restart with the smallest validation D_stsp
    df.to_parquet(tmp_path / "runs.parquet", index=False)
    back = pd.read_parquet(tmp_path / "runs.parquet")
    assert back["diverged"].tolist() == [False, False, True]
    assert back["attractor_class"].tolist() == ["chaotic", "chaotic", "diverged"]


def test_older_metrics_without_flags_or_types(tmp_path):
    old = _metrics("03", generated_finite=False, d_stsp=math.inf)
    for k in ("diverged", "diverged_stage", "diverged_at_step", "n_cycles", "cycles", "attractor",
              "attractor_class", "n_visited_regions", "basins", "n_attractors"):
        del old[k]
    old["fixed_points"] = [{k: v for k, v in fp.items() if k != "type"} for fp in old["fixed_points"]]
    row = collect_metrics([_write(tmp_path, "old.json", old)]).iloc[0]
    assert row["diverged"] and row["diverged_stage"] == "generation" and row["attractor_class"] == "diverged"
    assert row["n_fixed_points"] == 3 and math.isnan(row["n_fixed_points_saddle"])  # no types recorded
    assert math.isnan(row["n_attractors"]) and not any(c.startswith("n_cycles_") for c in row.index)


@pytest.mark.parametrize("over, key", [
    (dict(diverged="yes"), "diverged"),
    (dict(fixed_points=[_object("wobbly")]), "fixed_points.*wobbly"),
    (dict(n_cycles=[1, 2]), "n_cycles"),
    (dict(n_visited_regions="17"), "n_visited_regions"),
])
def test_bad_invariants_name_file_and_key(tmp_path, over, key):
    p = _write(tmp_path, "sub-09_metrics.json", _metrics(**over))
    with pytest.raises(DsrpipeError, match=re.escape(str(p)) + f".*{key}"):
        collect_metrics([p])


def test_object_types_are_those_of_eigenvalue_type():
    examples = [[0.5, 0.2], [0.5 + 0.3j, 0.5 - 0.3j], [2.0, 1.5], [1.2 + 1j, 1.2 - 1j], [0.5, 2.0], [1.0, 0.5]]
    assert sorted(eigenvalue_type(np.array(e)) for e in examples) == sorted(OBJECT_TYPES)
