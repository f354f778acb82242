"""`dsrpipe preprocess` per modality on real files, and `preprocess_recording` errors leave nothing behind."""

import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.cli import main
from dsrpipe.io import read_timeseries
from dsrpipe.preprocessing.dispatch import preprocess_recording
from modality_files import (EEG_CHANNELS, FMRI_TR, FMRI_VOLUMES, SPIKE_SECONDS, SPIKE_UNITS, write_eeg,
                            write_fmri, write_spikes)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("recordings")
    bold, atlas = write_fmri(d)
    roi = d / "roi.tsv"
    rng = np.random.default_rng(1)
    pd.DataFrame({"roi_a": rng.normal(size=200), "roi_b": rng.normal(size=200), "input_cue": np.arange(200) % 2,
                  "label_phase": np.arange(200) // 50}).to_csv(roi, sep="\t", index=False)
    table = d / "table.csv"
    pd.DataFrame(rng.normal(size=(300, 2)), columns=["x", "y"]).to_csv(table, index=False)
    return {"eeg": write_eeg(d / "sub-01_raw.fif"), "bold": bold, "atlas": atlas,
            "spikes": write_spikes(d / "units.mat"), "roi": roi, "table": table}


def test_eeg(files, tmp_path):
    out = tmp_path / "eeg.parquet"
    assert main(["preprocess", "--modality", "eeg", str(files["eeg"]), "--out", str(out), "--subject", "01",
                 "--set", "resample_hz=100", "notch=[]"]) == 0
    ts = read_timeseries(out)
    assert (ts.modality, ts.subject, ts.channels, ts.dt) == ("eeg", "01", EEG_CHANNELS, 0.01)
    assert ts.n_samples == 2000 and ts.meta["eeg"]["notch"] == []
    assert ts.meta["recording"]["modality"] == "eeg"


def test_fmri_nifti_with_atlas(files, tmp_path):
    out = tmp_path / "fmri.parquet"
    assert main(["preprocess", "--modality", "fmri", str(files["bold"]), "--out", str(out),
                 "--atlas", str(files["atlas"])]) == 0
    ts = read_timeseries(out)
    assert (ts.modality, ts.channels, ts.dt, ts.n_samples) == ("fmri", ["roi_1", "roi_2", "roi_3"], FMRI_TR,
                                                               FMRI_VOLUMES)
    assert ts.subject == "sub-01_bold" and ts.meta["recording"]["atlas"] == str(files["atlas"])


def test_fmri_roi_table_keeps_bold_and_names_inputs_and_labels(files, tmp_path, capsys):
    out = tmp_path / "roi.parquet"
    assert main(["preprocess", "--modality", "fmri", str(files["roi"]), "--out", str(out)]) == 2
    assert "set fmri.tr" in capsys.readouterr().err and not out.exists()
    assert main(["preprocess", "--modality", "fmri", str(files["roi"]), "--out", str(out), "--set", "tr=1.5"]) == 0
    ts = read_timeseries(out)  # by default the modelled (BOLD) channels only
    assert (ts.channels, ts.dt) == (["roi_a", "roi_b"], 1.5)
    assert ts.meta["fmri"]["input_columns"] == ["input_cue"] and ts.meta["fmri"]["label_columns"] == ["label_phase"]
    full = read_timeseries(out, types=None)  # inputs and labels are typed channels of the same file
    assert full.channels == ["roi_a", "roi_b", "input_cue", "label_phase"]
    assert full.channel_types == ["continuous", "continuous", "input", "label"]
    assert np.array_equal(full.data[:, 2], np.arange(200) % 2)
    assert np.array_equal(full.data[:, 3], np.arange(200) // 50)  # integer codes 0..3 of categories "0".."3"
    assert full.meta["categorical"]["phase"] == {"columns": ["label_phase"], "encoding": "code",
                                                 "categories": ["0", "1", "2", "3"]}


def test_spikes(files, tmp_path):
    out = tmp_path / "spikes.parquet"
    assert main(["preprocess", "--modality", "spikes", str(files["spikes"]), "--out", str(out)]) == 0
    ts = read_timeseries(out)
    assert ts.modality == "spikes" and ts.n_channels == len(SPIKE_UNITS)
    assert ts.n_samples == int(SPIKE_SECONDS / 0.05) and np.allclose(ts.data, np.round(ts.data))


def test_timeseries_honours_dt(files, tmp_path, capsys):
    out = tmp_path / "table.parquet"
    assert main(["preprocess", "--modality", "timeseries", str(files["table"]), "--out", str(out),
                 "--dt", "0.004"]) == 0
    ts = read_timeseries(out)
    assert (ts.modality, ts.channels, ts.dt, ts.n_samples) == ("timeseries", ["x", "y"], 0.004, 300)
    assert main(["preprocess", "--modality", "timeseries", str(files["table"]), "--out", str(out),
                 "--set", "tr=2"]) == 2
    assert "no config section" in capsys.readouterr().err


@pytest.mark.parametrize("modality, suffix", [("eeg", "_raw.fif"), ("fmri", "_bold.nii.gz"), ("spikes", ".mat"),
                                              ("timeseries", ".csv")])
@pytest.mark.parametrize("defect", ["missing", "corrupt"])
def test_bad_file_exits_2_names_it_and_writes_nothing(tmp_path, capsys, modality, suffix, defect):
    bad = tmp_path / f"bad{suffix}"
    if defect == "corrupt":
        bad.write_bytes(b"\x00\x01 not a recording \xff" * 10)
    out = tmp_path / "out" / "x.parquet"
    extra = ["--atlas", str(tmp_path / "atlas.nii.gz")] if modality == "fmri" else []
    assert main(["preprocess", "--modality", modality, str(bad), "--out", str(out), *extra]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_options_that_do_not_belong_to_the_modality(files, tmp_path):
    out = tmp_path / "x.parquet"
    with pytest.raises(DsrpipeError, match="fMRI options"):
        preprocess_recording(files["eeg"], out, modality="eeg", subject="01", atlas=files["atlas"])
    with pytest.raises(DsrpipeError, match="dt is only for timeseries"):
        preprocess_recording(files["spikes"], out, modality="spikes", subject="01", dt=0.1)
    with pytest.raises(DsrpipeError, match="unknown modality"):
        preprocess_recording(files["table"], out, modality="meg", subject="01")
    with pytest.raises(DsrpipeError, match="behaviour option"):
        preprocess_recording(files["table"], out, modality="timeseries", subject="01", reference=files["table"])
    assert not out.exists()
