"""Spike trains written with Neo's own writers, binned back and compared with numpy.histogram."""

import logging
import os

import neo
import numpy as np
import pytest
import quantities as pq
from neo.io import NeoMatlabIO, PickleIO
from scipy.ndimage import gaussian_filter1d

from dsrpipe import DsrpipeError
from dsrpipe.preprocessing.spikes import SpikesConfig, bin_spike_trains

# two segments with their own time axes; unit "b" never fires
WINDOWS = [(0.0, 10.0), (100.0, 108.0)]
N_BINS = [200, 160]  # at the default 0.05 s
RATES = {"a": 12.0, "b": 0.0, "c": 30.0}


def _times():
    rng = np.random.default_rng(3)
    return [
        {u: np.sort(rng.uniform(t0, t1, size=int(r * (t1 - t0)))) for u, r in RATES.items()}
        for t0, t1 in WINDOWS
    ]


TIMES = _times()


def _block(with_trains=True):
    blk = neo.Block(name="session")
    for (t0, t1), seg_times in zip(WINDOWS, TIMES):
        seg = neo.Segment()
        if with_trains:
            for unit, times in seg_times.items():
                seg.spiketrains.append(neo.SpikeTrain(times * pq.s, t_start=t0 * pq.s, t_stop=t1 * pq.s, name=unit))
        else:
            seg.analogsignals.append(neo.AnalogSignal(np.zeros((10, 1)) * pq.mV, sampling_rate=1 * pq.Hz))
        blk.segments.append(seg)
    return blk


def _write(blk, path):
    if path.suffix == ".nix":
        from neo.io import NixIO

        io = NixIO(str(path), mode="ow")
        io.write_block(blk)
        io.close()
    elif path.suffix == ".mat":
        NeoMatlabIO(str(path)).write_block(blk)
    else:
        PickleIO(str(path)).write_block(blk)
    return path


def _expected(units, bw=0.05, segments=(0, 1)):
    out = []
    for s in segments:
        t0, t1 = WINDOWS[s]
        n = int(round((t1 - t0) / bw))
        edges = t0 + bw * np.arange(n + 1)
        out.append(np.column_stack([np.histogram(TIMES[s][u], bins=edges)[0] for u in units]))
    return np.vstack(out)


@pytest.fixture(params=[".mat", ".nix", ".pkl"])
def neo_file(request, tmp_path):
    if request.param == ".nix":
        pytest.importorskip("nixio")
    return _write(_block(), tmp_path / f"units{request.param}")


def test_counts_equal_histogram_and_silent_unit_dropped(neo_file, caplog):
    with caplog.at_level(logging.INFO, logger="dsrpipe.preprocessing.spikes"):
        ts = bin_spike_trains(neo_file, SpikesConfig(), subject="01")
    assert ts.channels == ["unit_a", "unit_c"]
    assert ts.data.shape == (sum(N_BINS), 2)
    np.testing.assert_array_equal(ts.data, _expected(["a", "c"]))
    assert ts.dt == 0.05 and ts.modality == "spikes" and ts.subject == "01"
    meta = ts.meta["spikes"]
    assert meta["counts"] is True and meta["dropped_silent"] == ["b"]
    assert [s["first_row"] for s in meta["segments"]] == [0, N_BINS[0]]
    assert meta["segments"][1]["t_start"] == 100.0
    assert ts.meta["provenance"]["source"] == str(neo_file) and len(ts.meta["provenance"]["sha256"]) == 64
    assert "dropped 1 silent unit" in caplog.text


def test_keep_silent_units_select_units_and_segments(neo_file):
    ts = bin_spike_trains(neo_file, SpikesConfig(drop_silent=False), subject="01")
    assert ts.channels == ["unit_a", "unit_b", "unit_c"]
    assert not ts.data[:, 1].any()
    ts = bin_spike_trains(neo_file, SpikesConfig(units=["c", 0], segments=[1], bin_width=0.1), subject="01")
    assert ts.channels == ["unit_c", "unit_a"]
    np.testing.assert_array_equal(ts.data, _expected(["c", "a"], bw=0.1, segments=(1,)))


def test_rate_mode_is_sqrt_then_smoothed_within_segments(neo_file):
    ts = bin_spike_trains(neo_file, SpikesConfig(rate=True, smooth_sigma_bins=2.0), subject="01")
    counts = _expected(["a", "c"])
    want = np.vstack([gaussian_filter1d(np.sqrt(block / 0.05), 2.0, axis=0, mode="nearest")
                      for block in np.split(counts, [N_BINS[0]])])
    np.testing.assert_allclose(ts.data, want)
    assert ts.meta["spikes"]["counts"] is False


def test_time_window(tmp_path):
    path = _write(_block(), tmp_path / "units.mat")
    ts = bin_spike_trains(path, SpikesConfig(t_start=2.0, t_stop=5.0, segments=[0]), subject="01")
    edges = 2.0 + 0.05 * np.arange(61)
    np.testing.assert_array_equal(ts.data[:, 0], np.histogram(TIMES[0]["a"], bins=edges)[0])


def test_named_io_class(tmp_path):
    path = _write(_block(), tmp_path / "units.pkl")
    ts = bin_spike_trains(path, SpikesConfig(), subject="01", io="PickleIO")
    assert ts.meta["spikes"]["io"] == "PickleIO"
    with pytest.raises(DsrpipeError, match="unknown Neo IO class 'NoSuchIO'"):
        bin_spike_trains(path, SpikesConfig(), subject="01", io="NoSuchIO")


@pytest.mark.parametrize("suffix", [".mat", ".nix", ".pkl"])
def test_corrupt_and_truncated_files(tmp_path, suffix):
    if suffix == ".nix":
        pytest.importorskip("nixio")
    bad = tmp_path / f"random{suffix}"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(DsrpipeError, match=f"random{suffix}.*(corrupt|unreadable)"):
        bin_spike_trains(bad, SpikesConfig(), subject="01")
    good = _write(_block(), tmp_path / f"whole{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DsrpipeError, match=f"cut{suffix}"):
        bin_spike_trains(cut, SpikesConfig(), subject="01")


def test_bad_requests(tmp_path):
    path = _write(_block(), tmp_path / "units.mat")
    cases = [
        (SpikesConfig(bin_width=20.0), "bin_width 20.0 s is larger than segment 0"),
        (SpikesConfig(units=["zzz"]), "unknown unit 'zzz'"),
        (SpikesConfig(units=[7]), "unit index 7"),
        (SpikesConfig(units=["a", "b"]), "requested unit.*b have no spikes"),
        (SpikesConfig(segments=[5]), r"segment\(s\) \[5\]"),
        (SpikesConfig(units=["b"]), "no spikes"),
        (SpikesConfig(t_start=50.0, t_stop=60.0), "does not overlap segment 0"),
    ]
    for cfg, message in cases:
        with pytest.raises(DsrpipeError, match=f"units.mat.*{message}"):
            bin_spike_trains(path, cfg, subject="01")
    with pytest.raises(DsrpipeError, match="missing.mat: file not found"):
        bin_spike_trains(tmp_path / "missing.mat", SpikesConfig(), subject="01")


def test_block_without_spike_trains_and_all_silent(tmp_path):
    empty = _write(_block(with_trains=False), tmp_path / "lfp_only.mat")
    with pytest.raises(DsrpipeError, match="lfp_only.mat: no spike trains"):
        bin_spike_trains(empty, SpikesConfig(), subject="01")
    blk = neo.Block()
    seg = neo.Segment()
    seg.spiketrains.append(neo.SpikeTrain([] * pq.s, t_stop=5 * pq.s, name="quiet"))
    blk.segments.append(seg)
    silent = _write(blk, tmp_path / "silent.mat")
    with pytest.raises(DsrpipeError, match="silent.mat: all 1 units are silent"):
        bin_spike_trains(silent, SpikesConfig(), subject="01")


def test_unit_names_fall_back_to_annotations_and_index(tmp_path):
    blk = neo.Block()
    seg = neo.Segment()
    seg.spiketrains.append(neo.SpikeTrain([0.1, 0.2] * pq.s, t_stop=1 * pq.s, unit_id=17))
    seg.spiketrains.append(neo.SpikeTrain([0.3] * pq.s, t_stop=1 * pq.s))
    blk.segments.append(seg)
    ts = bin_spike_trains(_write(blk, tmp_path / "anon.pkl"), SpikesConfig(bin_width=0.25), subject="01")
    assert ts.channels == ["unit_17", "unit_1"]
    np.testing.assert_array_equal(ts.data, [[2, 0], [0, 1], [0, 0], [0, 0]])


def test_config_checks():
    for kwargs in ({"bin_width": 0}, {"units": []}, {"segments": [-1]}, {"t_start": 5, "t_stop": 1},
                   {"smooth_sigma_bins": -1}):
        with pytest.raises(DsrpipeError):
            SpikesConfig(**kwargs)
    assert SpikesConfig(units=["a", 1]).units == ("a", 1)


def test_unit_missing_from_a_segment_counts_zero(tmp_path, caplog):
    blk = neo.Block()
    for names in (("a", "c"), ("a",)):
        seg = neo.Segment()
        for name in names:
            seg.spiketrains.append(neo.SpikeTrain([0.1, 0.6] * pq.s, t_stop=1 * pq.s, name=name))
        blk.segments.append(seg)
    with caplog.at_level(logging.WARNING, logger="dsrpipe.preprocessing.spikes"):
        ts = bin_spike_trains(_write(blk, tmp_path / "partial.pkl"), SpikesConfig(bin_width=0.5), subject="01")
    np.testing.assert_array_equal(ts.data, [[1, 1], [1, 1], [1, 0], [1, 0]])
    assert "unit c missing from segment 1" in caplog.text
