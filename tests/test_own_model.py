"""A user's own model (``path/to/file.py:factory``) through every verb of the CLI, and progress
off a terminal: plain lines with elapsed and remaining time, ``--quiet`` keeping one summary
line per compress step."""
import json
import os
import re
import subprocess
import sys

import pytest

from dtmm.cli import main

from _helpers import needs_qemu, small_net_source

NET = small_net_source("make") + '''
def broken():
    return 42
'''
ELAPSED = re.compile(r"elapsed \d[^,]*, ~\d.* left")


def _dtmm(args, cwd, env=None):
    """``dtmm ARGS`` in a subprocess, stdout and stderr piped (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "dtmm.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``dtmm train --model mynet.py:make`` (a relative spec) in a pipe."""
    d = tmp_path_factory.mktemp("own")
    (d / "mynet.py").write_text(NET)
    r = _dtmm(["train", "--model", "mynet.py:make", "--data", "digits", "--epochs", "3",
               "--out", "train"], cwd=d)
    return d, r


def test_train_own_model_in_a_pipe_prints_epoch_lines(trained):
    d, r = trained
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["model"] == "mynet.py:make" and res["test_accuracy"] > 0.5
    assert (d / "train" / "checkpoint.pt").is_file()
    lines = [ln for ln in r.stderr.splitlines() if "epoch" in ln]
    assert len(lines) == 3, r.stderr
    assert all(ELAPSED.search(ln) for ln in lines), lines
    assert lines[0].startswith("train epoch 1/3: ")
    # the checkpoint records the file's absolute path: it loads from any working directory
    from dtmm.pipeline.models import _header
    spec = _header(d / "train" / "checkpoint.pt").model_name
    assert spec == f"{(d / 'mynet.py').resolve()}:make"


def test_quantize_prune_plan_verify_a_checkpoint_of_own_model(trained, tmp_path, capsys):
    d, r = trained
    assert r.returncode == 0, r.stderr
    ck = str(d / "train" / "checkpoint.pt")
    capsys.readouterr()
    # quantize (from another working directory than the training's)
    os.chdir(tmp_path)
    assert main(["quantize", "--checkpoint", ck, "--data", "digits", "--out", "q"]) == 0
    out, err = capsys.readouterr()
    q = json.loads(out)
    assert q["int8_accuracy"] > 0.5 and abs(q["int8_accuracy"] - q["float_accuracy"]) < 0.05
    assert (tmp_path / "q" / "model_int8.tflite").is_file()
    steps = [ln for ln in err.splitlines() if re.match(r"\[\d/3\] ", ln)]
    assert [s[:5] for s in steps] == ["[1/3]", "[2/3]", "[3/3]"], err
    assert main(["quantize", "--checkpoint", ck, "--data", "digits", "--out", "q2", "--quiet",
                 "--model", str(d / "mynet.py") + ":make"]) == 0
    assert capsys.readouterr().err == ""
    # one-shot prune
    assert main(["prune", "--checkpoint", ck, "--data", "digits", "--granularity", "filterlet",
                 "--ratio", "0.3", "--out", "p"]) == 0
    out, err = capsys.readouterr()
    p = json.loads(out)
    assert p["int8_accuracy"] > 0.3 and p["total_bytes"] < p["dense_int8_total_bytes"]
    assert "[3/3] evaluate: " in err
    # plan (sensitivity loss model, measured here: a fresh cache) and prune --plan
    os.environ["DTMM_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        assert main(["plan", "--checkpoint", ck, "--data", "digits", "--flash", "40KB",
                     "--loss-model", "sensitivity", "--out", "plan.json", "--json"]) == 0
        out, err = capsys.readouterr()
        assert [ln for ln in err.splitlines() if ln.startswith("sensitivity: ")
                and ELAPSED.search(ln)], err
        assert json.loads(out)["predicted"]["flash_bytes"] <= 40 * 1024
        assert main(["prune", "--checkpoint", ck, "--data", "digits", "--plan", "plan.json",
                     "--out", "pp", "--quiet"]) == 0
        pp = json.loads(capsys.readouterr()[0])
        assert pp["prediction_exact"] == {"const_bytes": True, "arena_bytes": True}
    finally:
        del os.environ["DTMM_CACHE_DIR"]
    # verify the quantized and the pruned models on the host: bit-exact with the reference
    for model in ("q/model_int8.tflite", "pp/model.tflite"):
        assert main(["verify", model, "--backend", "host", "--data", "digits", "--json"]) == 0
        v = json.loads(capsys.readouterr()[0])
        assert v["bit_exact"] and v["mismatches"] == 0 and v["accuracy"] > 0.3, v


def test_checkpoint_whose_model_file_is_gone_names_the_fix(trained, tmp_path, capsys):
    d, r = trained
    assert r.returncode == 0, r.stderr
    import shutil
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(d / "train" / "checkpoint.pt", moved / "ck.pt")
    shutil.copy(d / "mynet.py", tmp_path / "renamed.py")
    # a copy of the checkpoint still finds the recorded (absolute) file ...
    (d / "mynet.py").rename(d / "gone.py")
    try:
        rc = main(["quantize", "--checkpoint", str(moved / "ck.pt"), "--data", "digits",
                   "--out", str(tmp_path / "q"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "--model path/to/file.py:make" in err and "Traceback" not in err, err
        # ... and --model rebuilds it from wherever the file is now
        assert main(["quantize", "--checkpoint", str(moved / "ck.pt"), "--data", "digits",
                     "--model", f"{tmp_path / 'renamed.py'}:make", "--out", str(tmp_path / "q"),
                     "--quiet"]) == 0
    finally:
        (d / "gone.py").rename(d / "mynet.py")


@pytest.mark.parametrize("spec,msg", [
    ("mynet.py:nope", "defines no callable 'nope'"),
    ("mynet.py:broken", "returned a int, not a torch.nn.Module"),
    ("missing.py:make", "is not a file (expected path/to/file.py:factory)"),
    ("mynet.py", "expected path/to/file.py:factory"),
    ("mynet", "your own as path/to/file.py:factory"),
    ("model.onnx", "ONNX models are not accepted"),
])
def test_bad_model_spec_is_a_user_error(tmp_path, capsys, monkeypatch, spec, msg):
    (tmp_path / "mynet.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--model", spec, "--data", "digits", "--epochs", "1", "--out", "t"])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err, err
    assert not (tmp_path / "t").exists()


@needs_qemu
def test_compress_own_model_checkpoint_progress_and_quiet(trained, tmp_path):
    d, r = trained
    assert r.returncode == 0, r.stderr
    args = ["compress", "--model", "mynet.py:make", "--checkpoint", "train/checkpoint.pt",
            "--data", "digits", "--flash", "40KB", "--ram", "40KB", "--max-accuracy-drop", "3",
            "--epochs", "1", "--max-attempts", "1", "--qat", "never", "--verify-samples", "20"]
    env = {"DTMM_CACHE_DIR": str(tmp_path / "cache")}
    loud = _dtmm(args + ["--out", str(tmp_path / "a"), "--json"], cwd=d, env=env)
    assert loud.returncode in (0, 1), loud.stderr
    s = json.loads(loud.stdout)
    assert s["verify"]["host"]["bit_exact"] and s["verify"]["qemu-m55"]["bit_exact"], s["verify"]
    assert s["verify"]["qemu-m55"]["samples"] == 20
    assert s["budgets_met"]["flash"]["met"]
    assert (tmp_path / "a" / "model.tflite").is_file()
    err = loud.stderr.splitlines()
    for pat in (r"^\[1/7\] dense model \.\.\.$", r"^\[1/7\] dense model: float ",
                r"^\[7/7\] report: "):
        assert any(re.search(pat, ln) for ln in err), (pat, loud.stderr)
    for what in ("sensitivity: ", "qemu-m55: images run: 20/20 images"):
        assert any(ln.startswith(what) and ELAPSED.search(ln) for ln in err), (what, loud.stderr)
    # --quiet: no progress, one summary line per step
    quiet = _dtmm(args + ["--out", str(tmp_path / "b"), "--quiet"], cwd=d, env=env)
    assert quiet.returncode in (0, 1), quiet.stderr
    lines = quiet.stderr.splitlines()
    assert not [ln for ln in lines if "elapsed" in ln or ln.endswith("...")], quiet.stderr
    tags = [ln.split()[0] for ln in lines if re.match(r"\[\d/7\] ", ln)]
    assert tags == [f"[{k}/7]" for k in range(1, 8)], quiet.stderr
