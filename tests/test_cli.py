"""The dtmm command line: train -> quantize -> verify, --help, clear errors, no half-written files."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dtmm.cli import main


def run_cli(*args, capsys):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny ResNet-8 trained briefly on sklearn digits, quantized to .tflite."""
    d = tmp_path_factory.mktemp("run")
    assert main(["train", "--model", "resnet8", "--data", "digits", "--epochs", "3",
                 "--out", str(d), "--quiet"]) == 0
    assert main(["quantize", "--checkpoint", str(d / "checkpoint.pt"), "--data", "digits",
                 "--calib-samples", "64", "--eval-samples", "120", "--out", str(d)]) == 0
    return d


def test_train_quantize_verify_round_trip(trained, capsys):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["model"] == "resnet8" and summary["eval_samples"] == 120
    assert 0.0 <= summary["int8_accuracy"] <= 1.0
    assert summary["layers"][0]["op"] == "conv2d"
    for backend in ("reference", "tflm"):
        code, out, _ = run_cli("verify", str(trained / "model_int8.tflite"), "--backend", backend,
                               "--data", "digits", "--samples", "100", "--json", capsys=capsys)
        res = json.loads(out)
        assert code == 0
        assert res["backend"] == backend and res["samples"] == 100
        assert res["bit_exact"] is True and res["mismatches"] == 0
        assert res["accuracy"] > 0.3                 # well above chance (0.1) after one short epoch


def test_every_verb_has_help():
    for verb in ("train", "quantize", "verify", "prune", "inspect", "export", "models", "demo",
                 "bench", "bench kernels"):
        r = subprocess.run([sys.executable, "-m", "dtmm.cli", *verb.split(), "--help"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "usage:" in r.stdout


def test_unknown_dataset_is_a_clear_error(tmp_path, capsys):
    code, _, err = run_cli("train", "--model", "resnet8", "--data", "imagenet", "--out",
                           str(tmp_path / "x"), capsys=capsys)
    assert code == 2 and "unknown dataset 'imagenet'" in err and "mnist5k" in err
    assert not (tmp_path / "x").exists()


def test_empty_dataset_is_a_clear_error(tmp_path, capsys):
    npz = tmp_path / "empty.npz"
    np.savez(npz, x=np.zeros((0, 8, 8), np.uint8), y=np.zeros((0,), np.int64))
    code, _, err = run_cli("train", "--model", "resnet8", "--data", f"npz:{npz}", "--out",
                           str(tmp_path / "x"), capsys=capsys)
    assert code == 2 and "empty" in err
    assert not (tmp_path / "x").exists()


def test_checkpoint_of_another_model_is_refused(trained, tmp_path, capsys):
    import torch
    ck = torch.load(trained / "checkpoint.pt", weights_only=True)
    ck["model_name"] = "vgg11"                               # claims another architecture
    bad = tmp_path / "bad.pt"
    torch.save(ck, bad)
    code, _, err = run_cli("quantize", "--checkpoint", str(bad), "--data", "digits", "--out",
                           str(tmp_path / "q"), capsys=capsys)
    assert code == 2 and "error:" in err
    assert not (tmp_path / "q").exists()


def test_checkpoint_for_another_dataset_shape_is_refused(trained, tmp_path, capsys):
    code, _, err = run_cli("quantize", "--checkpoint", str(trained / "checkpoint.pt"), "--data",
                           "mnist5k", "--out", str(tmp_path / "q"), capsys=capsys)
    assert code == 2 and "(1, 28, 28)" in err and "(1, 8, 8)" in err
    assert not (tmp_path / "q").exists()


def test_truncated_tflite_is_refused(trained, tmp_path, capsys):
    data = (trained / "model_int8.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 3])
    for backend in ("reference", "tflm"):
        code, _, err = run_cli("verify", str(cut), "--backend", backend, "--data", "digits",
                               capsys=capsys)
        assert code == 2 and err.startswith("error:") and "truncated" in err.lower(), err


def test_missing_model_file(tmp_path, capsys):
    code, _, err = run_cli("verify", str(tmp_path / "nope.tflite"), "--data", "digits", capsys=capsys)
    assert code == 2 and "no such file" in err


def test_failed_quantize_leaves_no_partial_output(trained, tmp_path, capsys, monkeypatch):
    import dtmm.tflite.export as export

    def boom(graph):
        raise export.GraphError("simulated export failure")
    monkeypatch.setattr(export, "to_tflite_bytes", boom)
    out = tmp_path / "q"
    code, _, err = run_cli("quantize", "--checkpoint", str(trained / "checkpoint.pt"), "--data",
                           "digits", "--calib-samples", "16", "--eval-samples", "16", "--out",
                           str(out), capsys=capsys)
    assert code == 2 and "simulated export failure" in err
    assert not out.exists() or not any(out.iterdir())


def test_bench_kernels_verb_is_wired(capsys):
    from dtmm.codegen.platform import toolchain_available
    missing = toolchain_available("cortex-m55")
    if missing:
        pytest.skip(missing)
    assert main(["bench", "kernels", "--quick", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["unit"].startswith("executed instructions")
    assert all(r["verified"] and r["instructions"] > 0 for r in res["rows"])


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    """The whole demo: trains, compresses under the flash budget, bit-exact on host and M55."""
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "host: bit-exact" in out and "qemu-m55: bit-exact" in out and "next:    dtmm export" in out
    s = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert all(v["met"] for v in s["budgets_met"].values())
    # a second demo resumes the first one's folder
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
