"""dtmm compress end to end (small): budgets met, bit-exact on host and qemu-m55, accuracy bound
held, resumable after an interruption, the same bytes from the same seed; bad input refused
before any work."""
import json
from pathlib import Path

import pytest

from dtmm.cli import main
from dtmm.pipeline.compress import CompressConfig, compress_command
from dtmm.errors import DtmmError

from _helpers import needs_qemu

NET = '''import torch.nn as nn

def small(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

def not_a_module(input_shape, num_classes):
    return "oops"
'''


@pytest.fixture(scope="module")
def netfile(tmp_path_factory):
    p = tmp_path_factory.mktemp("net") / "mynet.py"
    p.write_text(NET)
    return p


def _cfg(**kw):
    base = dict(flash="40KB", ram="40KB", max_accuracy_drop=2.0, epochs=3, train_epochs=12,
                verify_samples=16, max_attempts=2, qat="never")
    base.update(kw)
    return CompressConfig(**base)


@needs_qemu
def test_compress_meets_budgets_bit_exact_and_reproducible(netfile, tmp_path):
    spec = f"{netfile}:small"
    res = compress_command(model=spec, data="digits", out=str(tmp_path / "a"), config=_cfg(),
                           quiet=True)
    s = res.summary
    assert s["budgets_met"]["flash"]["met"] and s["budgets_met"]["flash"]["measured"]
    assert s["budgets_met"]["sram"]["met"]
    assert s["flash_bytes"] <= 40 * 1024
    assert s["verify"]["host"]["bit_exact"] and s["verify"]["qemu-m55"]["bit_exact"]
    acc = s["accuracy"]
    assert acc["int8_after"] >= acc["int8_before"] - 0.02
    assert s["plan"]["predicted"]["const_bytes"] == s["const_bytes"]
    for k in ("flash_bytes", "const_bytes", "ram_bytes", "instructions_per_inference", "budgets",
              "plan", "attempts", "verify"):
        assert k in s
    for k in ("float_before", "int8_before", "float_after", "int8_after"):
        assert 0.0 <= acc[k] <= 1.0
    out = tmp_path / "a"
    for f in ("model.tflite", "model_dense.tflite", "plan.json", "summary.json", "report.md",
              "project/model.c"):
        assert (out / f).is_file(), f
    assert "## Budgets" in (out / "report.md").read_text()
    # the same inputs and seed: the same plan and the same bytes
    res2 = compress_command(model=spec, data="digits", out=str(tmp_path / "b"), config=_cfg(),
                            quiet=True)
    assert (tmp_path / "b" / "model.tflite").read_bytes() == (out / "model.tflite").read_bytes()
    assert res2.plan["strategy"] == res.plan["strategy"]


def test_compress_resumes_after_an_interruption(netfile, tmp_path):
    spec = f"{netfile}:small"
    cfg = _cfg(train_epochs=2, epochs=1, max_attempts=1, max_accuracy_drop=100.0)
    calls = []

    def interrupted(model, ctx):
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compress_command(model=spec, data="digits", out=str(tmp_path / "r"), config=cfg, quiet=True,
                         fine_tune_fn=interrupted)
    state = tmp_path / "r" / ".dtmm-state"
    assert (state / "dense.json").is_file() and (state / "plan1.json").is_file()
    assert not (state / "finetune1.json").exists() and not (tmp_path / "r" / "summary.json").exists()
    # without --resume the folder is refused; with it, the run continues from fine-tuning
    with pytest.raises(DtmmError, match="--resume"):
        compress_command(model=spec, data="digits", out=str(tmp_path / "r"), config=cfg, quiet=True)
    dense_before = json.loads((state / "dense.json").read_text())
    res = compress_command(model=spec, data="digits", out=str(tmp_path / "r"), config=cfg,
                           quiet=True, resume=True)
    assert json.loads((state / "dense.json").read_text()) == dense_before
    assert res.summary["chosen_attempt"] == 1 and (tmp_path / "r" / "summary.json").is_file()
    # a resume with other inputs is refused, naming what changed
    with pytest.raises(DtmmError, match="config"):
        compress_command(model=spec, data="digits", out=str(tmp_path / "r"),
                         config=_cfg(train_epochs=3, epochs=1, max_attempts=1), quiet=True, resume=True)


@pytest.mark.parametrize("args,msg", [
    (["--flash", "1KB"], "below the smallest firmware"),
    (["--flash", "40KB", "--target", "cortex-m3"], "unknown target"),
    (["--flash", "40KB", "--method", "magic"], "unknown method"),
    (["--flash=-3KB"], "must be positive"),
])
def test_compress_refuses_bad_input_before_work(netfile, tmp_path, capsys, args, msg):
    rc = main(["compress", "--model", f"{netfile}:small", "--data", "digits",
               "--out", str(tmp_path / "o"), "--quiet"] + args)
    assert rc == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.json"))


def test_compress_refuses_a_factory_that_returns_no_module(netfile, tmp_path, capsys):
    rc = main(["compress", "--model", f"{netfile}:not_a_module", "--data", "digits", "--flash", "40KB",
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "not a torch.nn.Module" in capsys.readouterr().err


def test_compress_refuses_a_folder_with_other_files(netfile, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    rc = main(["compress", "--model", f"{netfile}:small", "--data", "digits", "--flash", "40KB",
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "notes.txt" in capsys.readouterr().err
    assert (tmp_path / "o" / "notes.txt").read_text() == "mine"


def test_compress_refuses_an_op_it_cannot_capture(tmp_path, capsys):
    p = tmp_path / "bad.py"
    p.write_text("import torch, torch.nn as nn\n"
                 "class M(nn.Module):\n"
                 "    def __init__(self):\n"
                 "        super().__init__(); self.c = nn.Conv2d(1, 4, 3)\n"
                 "    def forward(self, x):\n"
                 "        return torch.sigmoid(self.c(x)).flatten(1)\n"
                 "def make():\n    return M()\n")
    rc = main(["compress", "--model", f"{p}:make", "--data", "digits", "--flash", "40KB",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "sigmoid" in err
