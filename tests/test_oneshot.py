"""dtmm prune / inspect: every granularity to a compressed .tflite that verifies bit-exactly."""
import json

import numpy as np
import pytest

from dtmm.cli import main
from dtmm.formats import decode
from dtmm.graph.compressed import has_compressed_ops
from dtmm.tflite.reader import read_tflite


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    assert main(["train", "--model", "resnet8", "--data", "digits", "--epochs", "2", "--out", str(d),
                 "--quiet"]) == 0
    return d / "checkpoint.pt"


@pytest.mark.parametrize("granularity,fmt", [("filterlet", "fwcs"), ("element", "csr"),
                                             ("pattern", "pattern"), ("filter", "dense")])
def test_prune_verify_inspect(granularity, fmt, checkpoint, tmp_path, capsys):
    out = tmp_path / granularity
    assert main(["prune", "--checkpoint", str(checkpoint), "--data", "digits", "--granularity",
                 granularity, "--ratio", "0.5", "--importance", "l1", "--calib-samples", "64",
                 "--eval-samples", "60", "--out", str(out)]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == fmt
    if fmt in ("fwcs", "pattern"):        # cheaper than the same pruned layers stored dense
        assert summary["total_bytes"] < summary["dense_int8_total_bytes"]
    g = read_tflite((out / "model.tflite").read_bytes())
    assert has_compressed_ops(g) == (fmt != "dense")
    for op in g.ops:
        if getattr(op, "fmt", None) is not None:
            w = decode(op.fmt)
            assert op.format_name == fmt
            if fmt == "fwcs":     # whole filterlets gone: each (o, kh, kw) run all-zero or stored
                kept = np.abs(w).sum(axis=3) > 0
                assert 0.3 < kept.mean() <= 0.55
    for backend in ("reference", "tflm"):
        assert main(["verify", str(out / "model.tflite"), "--backend", backend, "--data", "digits",
                     "--samples", "40", "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["bit_exact"] and res["mismatches"] == 0
    assert main(["inspect", str(out / "model.tflite"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["bytes"]) == {"weights", "index", "quant", "meta"}
    assert rep["total_bytes"] == sum(rep["bytes"].values()) == summary["total_bytes"]
    formats = {layer["format"] for layer in rep["layers"] if layer["bytes"]["total"]}
    assert fmt in formats
    for layer in rep["layers"]:
        assert {"name", "format", "kept_ratio", "bytes"} <= set(layer)


def test_filter_pruning_removes_channels(checkpoint, tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["prune", "--checkpoint", str(checkpoint), "--data", "digits", "--granularity",
                 "filter", "--ratio", "0.5", "--importance", "l1", "--eval-samples", "20",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dead_channels"]                   # whole output channels left the graph
    # half the filters of each layer, and consumers lose the matching input channels too
    assert all(0.2 <= k <= 0.5 for k in summary["layer_kept"].values())


def test_ratios_file_with_unknown_layer_is_refused(checkpoint, tmp_path, capsys):
    ratios = tmp_path / "r.json"
    ratios.write_text(json.dumps({"no.such.layer": 0.5}))
    code = main(["prune", "--checkpoint", str(checkpoint), "--data", "digits", "--granularity",
                 "filterlet", "--ratios", str(ratios), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no.such.layer" in err
    assert not (tmp_path / "o").exists()


def test_per_layer_ratios_file(checkpoint, tmp_path, capsys):
    ratios = tmp_path / "r.json"
    ratios.write_text(json.dumps({"layers.2.conv2.conv": 0.75}))
    out = tmp_path / "o"
    assert main(["prune", "--checkpoint", str(checkpoint), "--data", "digits", "--granularity",
                 "filterlet", "--ratios", str(ratios), "--importance", "l2", "--eval-samples", "20",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layer_kept"] == {"layers.2.conv2.conv": 0.25}
    assert [l["name"] for l in summary["layers"] if l["format"] == "fwcs"] == ["layers.2.conv2.conv"]


def test_chip_needs_filter_granularity(checkpoint, tmp_path, capsys):
    code = main(["prune", "--checkpoint", str(checkpoint), "--data", "digits", "--granularity",
                 "filterlet", "--ratio", "0.5", "--importance", "chip", "--out", str(tmp_path / "o")])
    assert code == 2 and "CHIP" in capsys.readouterr().err


def test_inspect_refuses_a_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert main(["inspect", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error:")
