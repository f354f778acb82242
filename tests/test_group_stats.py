"""Group statistics: baseline flags, ranking, grouped summaries, permutation test (known answers)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dsrpipe import DsrpipeError
from dsrpipe.reporting.stats import (add_covariates, compare_groups, flag_baselines, permutation_test,
                                     quality_ranking, summarise_by)


def _table():
    return pd.DataFrame({
        "subject": ["01", "02", "03", "04"], "model": ["m"] * 4, "seed": [0] * 4,
        "d_stsp": [0.5, 3.0, 1.0, np.inf], "pe_20": [0.2, 0.1, 0.9, 0.3],
        "baseline_mean_d_stsp": [2.0, 2.0, 2.0, 2.0], "baseline_var1_d_stsp": [1.5, 2.5, 1.2, 2.0],
        "baseline_mean_pe_20": [1.0, 1.0, 1.0, 1.0], "baseline_var1_pe_20": [0.5, 0.5, 0.8, 0.5],
        "group": ["a", "a", "b", "b"], "selected": [True] * 4, "best_setting": [True] * 4,
    })


def test_beats_baselines_needs_every_metric_below_every_baseline():
    out = flag_baselines(_table())
    # 01 beats all; 02 worse D_stsp than both; 03 PE 0.9 above VAR's 0.8; 04 diverged (inf)
    assert out["beats_baselines"].tolist() == [True, False, False, False]
    no_baselines = flag_baselines(_table()[["subject", "d_stsp", "pe_20"]])
    assert no_baselines["beats_baselines"].isna().all()


def test_quality_ranking_puts_diverged_runs_last():
    ranking = quality_ranking(flag_baselines(_table()))
    assert ranking["subject"].tolist() == ["01", "03", "02", "04"]
    assert ranking["rank"].tolist() == [1, 2, 3, 4]


def test_summarise_by_group_by_hand():
    out = summarise_by(_table(), "group", ["pe_20"])
    a = out[out["group"] == "a"].iloc[0]
    assert a["median"] == pytest.approx(0.15) and a["mad"] == pytest.approx(0.05) and a["n"] == 2
    with pytest.raises(DsrpipeError, match="'site' is not a column"):
        summarise_by(_table(), "site", ["pe_20"])


def test_permutation_test_matches_the_exact_enumeration():
    """Small groups: compare with scipy's exact permutation test of the difference in means."""
    a, b = [1.1, 2.3, 3.0, 4.2, 5.5], [2.0, 6.1, 7.3, 8.0, 9.9]
    ours = permutation_test(a, b, n_permutations=20000, statistic="mean", seed=1)
    exact = stats.permutation_test((a, b), lambda x, y: np.mean(x) - np.mean(y), permutation_type="independent",
                                   alternative="two-sided", n_resamples=np.inf)
    assert ours["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert ours["p_value"] == pytest.approx(exact.pvalue, abs=0.01)


def test_permutation_test_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    same = permutation_test(rng.normal(size=30), rng.normal(size=30), n_permutations=2000)
    shifted = permutation_test(rng.normal(size=30) + 2, rng.normal(size=30), n_permutations=2000)
    assert same["p_value"] > 0.05 and shifted["p_value"] < 0.01
    with pytest.raises(DsrpipeError, match="at least 2"):
        permutation_test([1.0], [1.0, 2.0])


def test_compare_groups_and_covariates():
    df = add_covariates(_table(), {"01": {"age": 30, "group": "x"}, "03": {"age": 50}})
    assert df.loc[0, "age"] == 30 and df.loc[2, "age"] == 50 and math.isnan(df.loc[1, "age"])
    assert "cov_group" in df.columns  # clashes get a prefix
    result = compare_groups(_table(), "group", ["a", "b"], "pe_20", n_permutations=100)
    assert result["groups"] == ["a", "b"] and result["n_a"] == 2
    with pytest.raises(DsrpipeError, match="exactly two"):
        compare_groups(_table(), "group", ["a"], "pe_20")


def test_quality_section_in_the_report():
    from dsrpipe.config import ReportConfig
    from dsrpipe.reporting.html import render_report
    from dsrpipe.reporting.report import _quality_section
    from dsrpipe.reporting.stage import quality_tables

    table = flag_baselines(_table().assign(modality="timeseries", d_h=0.1, max_lyapunov=0.9))
    cfg = ReportConfig(group_by=("group",), compare_column="group", compare_groups=("a", "b"),
                       compare_metric="pe_20", permutations=200)
    quality = quality_tables(table, cfg)
    assert set(quality["grouped"]["by"]) == {"modality", "group"}
    html = render_report([_quality_section(quality)], "t")
    assert "Reconstruction quality" in html and "1 of 4 subjects beat both baseline models" in html
    assert "not better than a baseline: 03, 02, 04" in html
    assert "permutation p =" in html
