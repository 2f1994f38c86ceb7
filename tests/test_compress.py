"""dtmm compress end to end (small): budgets met, bit-exact on host and qemu-m55, accuracy bound
held, resumable after an interruption, the same bytes from the same seed; bad input refused
before any work."""
import json

import pytest

from dtmm.cli import main
from dtmm.pipeline.compress import CompressConfig, compress_command
from dtmm.errors import DtmmError

from _helpers import needs_qemu, small_net_source

NET = small_net_source("small") + '''
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
              "report.html", "project/model.c"):
        assert (out / f).is_file(), f
    assert "## Budgets" in (out / "report.md").read_text()
    # report.html: every plot from the real run; the per-op profile and the size split in it
    assert (out / "report.html").read_text().count('src="data:image/png;base64,') == 6
    prof = {p["op"]: p["instructions"] for p in s["verify"]["qemu-m55"]["profile"]}
    assert all(prof[ly["name"]] > 0 for ly in s["plan"]["layers"])
    assert s["size_breakdown"]["compressed"]["total"] == s["const_bytes"]
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


def test_compress_refuses_a_checkpoint_that_does_not_match_the_data(tmp_path, capsys):
    """Checked before the run folder is made: the corrected command may reuse --out."""
    from dtmm.train import save_checkpoint
    from dtmm.zoo import build_model

    ck = tmp_path / "r8.pt"
    save_checkpoint(ck, build_model("resnet8", (1, 8, 8), 10), model_name="resnet8",
                    input_shape=(1, 8, 8), num_classes=10, dataset="digits")
    rc = main(["compress", "--checkpoint", str(ck), "--data", "mnist5k", "--flash", "200KB",
               "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "checkpoint expects (1, 8, 8)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


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


@needs_qemu
@pytest.mark.parametrize("method", ["chip", "patdnn"])
def test_compress_baseline_methods(netfile, tmp_path, method):
    """The baselines run the same pipeline: budget met, bit-exact on host and M55."""
    res = compress_command(model=f"{netfile}:small", data="digits", out=str(tmp_path / method),
                           config=_cfg(method=method, flash="28KB", epochs=2, max_attempts=1,
                                       max_accuracy_drop=100.0), quiet=True)
    s = res.summary
    assert s["method"] == method and s["budgets_met"]["flash"]["met"]
    assert s["verify"]["host"]["bit_exact"] and s["verify"]["qemu-m55"]["bit_exact"]
    formats = {ly["format"] for ly in s["plan"]["layers"]}
    assert formats <= ({"dense"} if method == "chip" else {"dense", "pattern"})


def test_python_api_with_own_loaders_and_trainer(netfile, tmp_path):
    """dtmm.compress on a user's nn.Module, DataLoaders and training loop: the callable is the
    fine-tuning step, its masks hold, and the result carries the fine-tuned model and the
    compressed int8 graph whose reference outputs are the deployed model's."""
    import importlib.util

    import numpy as np
    import torch

    import dtmm
    from dtmm.data import load_dataset, split
    from dtmm.runtime.reference import run_reference
    from dtmm.quant.quantize import quantize_input
    from dtmm.tflite.reader import read_tflite

    spec = importlib.util.spec_from_file_location("mynet_api", netfile)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tr, va, te = split(load_dataset("digits"), val=0.1, test=0.2)
    loader = lambda ds, shuffle=False: torch.utils.data.DataLoader(  # noqa: E731
        torch.utils.data.TensorDataset(torch.from_numpy(ds.x), torch.from_numpy(ds.y)),
        batch_size=64, shuffle=shuffle, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = mod.small((1, 8, 8), 10)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(6):                                  # the user's own training, before
        for x, y in loader(tr, True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    calls = []

    def my_fine_tune(model, ctx):                       # the user's own loop, under masks
        calls.append(sorted(ctx.masks))
        o = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
        model.train()
        for x, y in ctx.train_loader:
            o.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            o.step()
        return None

    res = dtmm.compress(net, torch.zeros(1, 1, 8, 8), loader(tr, True), loader(va),
                        {"flash": "40KB", "ram": "40KB", "max_accuracy_drop": 5.0},
                        target="cortex-m55", test_loader=loader(te), fine_tune=my_fine_tune,
                        out=str(tmp_path / "api"),
                        config=CompressConfig(epochs=1, verify_samples=8, max_attempts=1,
                                              qat="never", loss_model="taylor"))
    assert calls and calls[0], "the user's fine-tuning step ran, with the masks to hold"
    s = res.summary
    assert s["budgets_met"]["flash"]["met"] and all(v.get("bit_exact", True) for v in s["verify"].values())
    assert isinstance(res.model, torch.nn.Module)
    g = read_tflite((tmp_path / "api" / "model.tflite").read_bytes())
    x = quantize_input(np.transpose(te.x[:8], (0, 2, 3, 1)), g.tensors[g.inputs[0]].qparams)
    assert np.array_equal(run_reference(res.graph, x), run_reference(g, x))
    with torch.no_grad():                               # the fine-tuned float model, as tested
        acc = float((res.model(torch.from_numpy(te.x)).argmax(1).numpy() == te.y).mean())
    assert acc == pytest.approx(s["accuracy"]["float_after"], abs=1e-4)


def test_fine_tuning_optimizer_and_schedule_are_settings():
    from dtmm.pipeline.compress import _check_config

    _check_config(_cfg(optimizer="adamw", schedule="step"))
    with pytest.raises(DtmmError, match="--schedule must be one of cosine, step, constant"):
        _check_config(_cfg(schedule="linear"))
    with pytest.raises(DtmmError, match="--optimizer"):
        _check_config(_cfg(optimizer="lbfgs"))


def test_gradual_keeps_fully_connected_runs_out_of_the_filterlet_schedule():
    """--gradual reaches convolution filterlets step by step; an FWCS fully connected layer's
    runs are pruned at once (kept in the beta-only plan) and skipped by the exact filterlet
    pass, whose masks are 4-D."""
    import torch.nn as nn

    from dtmm.pipeline.compress import _beta_only, _exact_filterlets

    plan = {"layers": [{"name": "0", "format": "fwcs", "alpha": 0.5, "kept_filterlets": 36},
                       {"name": "3", "format": "fwcs", "alpha": 0.5, "kept_filterlets": 10}]}
    b = _beta_only(plan, frozenset({"3"}))
    assert [ly["alpha"] for ly in b["layers"]] == [0.0, 0.5] and plan["layers"][0]["alpha"] == 0.5
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    _exact_filterlets(net, plan, skip=frozenset({"3"}))
    assert int((net[0].weight != 0).reshape(8, 1, 9).any(dim=1).sum()) == 36
    assert bool((net[3].weight != 0).all())
