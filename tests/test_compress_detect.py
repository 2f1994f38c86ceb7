"""dtmm compress for detection (the tiny YOLO on faces-det), at toy size: the task is chosen from
the data, AP@0.5 is the metric everywhere (dense, fine-tuned, int8, verify, the report), the loss
model, fine-tuning, distillation and QAT use the YOLO loss, budgets are met and the C model is
bit-exact; bad combinations are refused before any work. The registered faces-det (1,500 images
of 112x112) is replaced by 60 images of 32x32 (a 2x2 grid) to keep each run to seconds."""
import json

import numpy as np
import pytest
import torch

import dtmm.data as data_mod
from dtmm.cli import main
from dtmm.data import load_faces_det

TOY = dict(n=60, size=32)


@pytest.fixture
def toy_faces(monkeypatch):
    """``faces-det`` as 60 composited images of 32x32 (split by fold: 42 / 6 / 12)."""
    monkeypatch.setitem(data_mod._BUILTIN, "faces-det", lambda: load_faces_det(TOY["n"], size=TOY["size"]))


def _ok(s: dict) -> None:
    assert s["task"] == "detection" and s["metric"] == "AP@0.5" and s["accuracy"]["metric"] == "AP@0.5"
    for k in ("float_before", "int8_before", "float_after", "int8_after"):
        assert 0.0 <= s["accuracy"][k] <= 1.0
    assert all(v["met"] for k, v in s["budgets_met"].items() if k != "accuracy"), s["budgets_met"]
    assert s["verify"]["host"]["bit_exact"] and s["verify"]["host"]["samples"] == 12
    assert all(v.get("bit_exact", True) for v in s["verify"].values())


def test_compress_yolo_on_faces_det_cli(toy_faces, tmp_path, capsys):
    """The CLI end to end: measured-sensitivity loss model, distillation and QAT on the YOLO loss."""
    out = tmp_path / "o"
    rc = main(["compress", "--model", "yolo", "--data", "faces-det", "--flash", "700KB", "--ram", "256KB",
               "--epochs", "1", "--train-epochs", "1", "--max-accuracy-drop", "100", "--max-attempts", "1",
               "--distill", "--qat", "always", "--verify-samples", "2", "--out", str(out), "--quiet",
               "--json"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    _ok(s)
    assert s["plan"]["loss_model"] == "sensitivity"
    assert s["fine_tuning"]["distill"] and s["quantization"] == "qat"
    assert s["budgets_met"]["accuracy"]["met"]
    md = (out / "report.md").read_text()
    assert "## Accuracy: AP@0.5 (test split)" in md and "| backend | images | bit-exact | AP@0.5 |" in md
    assert json.loads((out / "summary.json").read_text())["metric"] == "AP@0.5"


def test_python_api_detection_loaders(tmp_path):
    """dtmm.compress on a trained TinyYOLO with loaders of (images, normalised padded boxes):
    detection is recognised from the boxes; Taylor loss model on the YOLO loss."""
    import dtmm
    from dtmm.data import split
    from dtmm.detect import DetectionTask
    from dtmm.pipeline.compress import CompressConfig
    from dtmm.train import train
    from dtmm.zoo import build_model

    tr, va, te = split(load_faces_det(TOY["n"], size=TOY["size"]), val=0.1, test=0.2)
    task = DetectionTask(hflip=False)
    net = build_model("yolo", tr.input_shape, 1, seed=0)
    train(net, tr, None, epochs=1, lr=2e-3, optimizer="adam", task=task, progress=False)
    batches = lambda ds: list(task.batches(ds, 16, shuffle=False, seed=0))  # noqa: E731
    res = dtmm.compress(net, torch.zeros(1, 1, 32, 32), batches(tr), batches(va),
                        {"flash": "700KB", "ram": "256KB", "max_accuracy_drop": 100.0},
                        test_loader=batches(te), out=str(tmp_path / "api"),
                        config=CompressConfig(epochs=1, verify_samples=2, max_attempts=1, qat="never",
                                              loss_model="taylor"))
    _ok(res.summary)
    assert res.summary["accuracy"]["float_after"] == pytest.approx(
        task.evaluate(res.model, te)[0], abs=1e-4)


@pytest.mark.parametrize("argv,msg", [
    (["compress", "--model", "resnet8", "--data", "faces-det", "--flash", "700KB"], "use a detector (yolo)"),
    (["compress", "--model", "yolo", "--data", "digits", "--flash", "700KB"], "yolo is a detector"),
    (["train", "--model", "resnet8", "--data", "faces-det", "--epochs", "1"], "is a classifier"),
    (["compress", "--model", "CLASSIFIER", "--data", "faces-det", "--flash", "700KB"],
     "YOLO-style detector"),
])
def test_detection_mismatches_are_refused_before_work(toy_faces, tmp_path, capsys, argv, msg):
    """A zoo classifier / detector on the other kind of data by name; a user's classifier on
    detection data by its output's shape."""
    from _helpers import small_net_source

    (tmp_path / "net.py").write_text(small_net_source("small"))
    argv = [f"{tmp_path / 'net.py'}:small" if a == "CLASSIFIER" else a for a in argv]
    rc = main(argv + ["--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_distillation_loss_for_detection_and_fine_tuning_on_boxes():
    """The detection soft-target loss is zero on equal heads and pulls a student towards its
    teacher; the built-in fine-tuning trains on boxes with it and reports AP@0.5."""
    from dtmm.detect import DetectionTask
    from dtmm.prune import apply_masks
    from dtmm.train import Distillation, FineTuneConfig, fine_tune
    from dtmm.zoo import build_model

    task = DetectionTask()
    t = torch.randn(3, 10, 2, 2)
    assert float(task.distill_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    s = t + torch.randn_like(t)
    assert float(task.distill_loss(s, t)) > 0
    ds = load_faces_det(20, size=32)
    net = build_model("yolo", ds.input_shape, 1, seed=0)
    keep = torch.rand_like(net.features.conv3.conv.weight) > 0.5
    apply_masks(net, {"features.conv3.conv": keep})
    teacher = build_model("yolo", ds.input_shape, 1, seed=1).eval()
    res = fine_tune(net, ds, ds, teacher=teacher, quiet=True,
                    config=FineTuneConfig(epochs=1, lr=1e-3, optimizer="adam", batch_size=8,
                                          distill=Distillation(), task=task))
    assert 0.0 <= res.val_acc <= 1.0 and np.isfinite(res.history[0].train_loss)
    assert bool(torch.all(net.features.conv3.conv.weight[~keep] == 0))


def test_paper_bench_jobs_per_model_data_and_epochs(tmp_path):
    """The full run's job list: the detector with its own data and fine-tuning epochs."""
    from dtmm.bench import paper

    assert paper.FULL_MODELS["yolo"] == ("dtmm", "chip", "patdnn")
    dense = {"resnet8": {"flash_bytes": 100_000, "const_bytes": 80_000},
             "yolo": {"flash_bytes": 1_600_000, "const_bytes": 1_580_000}}
    models = {"resnet8": ("dtmm",), "yolo": paper.FULL_MODELS["yolo"]}
    data = {m: paper.MODEL_DATA.get(m, paper.FULL_DATA) for m in models}
    epochs = {m: paper.MODEL_EPOCHS.get(m, paper.FULL_EPOCHS) for m in models}
    js = paper.jobs(tmp_path, models, (0.5, 0.25), {"resnet8": "r.pt", "yolo": "y.pt"}, dense, data,
                    epochs=epochs, verify_samples=32, loss_model="sensitivity")
    assert [(j.model, j.method, j.frac) for j in js][:4] == [
        ("resnet8", "dtmm", 0.5), ("yolo", "dtmm", 0.5), ("yolo", "chip", 0.5), ("yolo", "patdnn", 0.5)]
    y = [j for j in js if j.model == "yolo"]
    assert {j.data for j in y} == {"faces-det"} and {j.epochs for j in y} == {paper.MODEL_EPOCHS["yolo"]}
    assert y[0].model_bytes == 790_000 and y[0].checkpoint == "y.pt" and y[0].ram == "512KB"
    assert {(j.data, j.epochs, j.ram) for j in js if j.model == "resnet8"} == {("mnist5k", paper.FULL_EPOCHS, "256KB")}


def test_bench_paper_models_yolo_alone(toy_faces, tmp_path, monkeypatch, capsys):
    """`dtmm bench paper --models yolo` (the full run's path, at toy size: one size, DTMM only,
    a 1-epoch dense model): its dense checkpoint from train_yolo_faces, AP@0.5 labelled in the
    report, the per-model fine-tuning epochs recorded; a second call resumes the finished run."""
    import sys

    from dtmm.benchmd import DEFAULT_PATH
    from dtmm.bench import paper

    sys.path.insert(0, str(DEFAULT_PATH.parent / "scripts"))
    import train_yolo_faces

    monkeypatch.setattr(train_yolo_faces, "RUNS", tmp_path / "dense")
    monkeypatch.setattr(train_yolo_faces, "EPOCHS", 1)
    monkeypatch.setattr(paper, "FRACTIONS", (0.5,))
    monkeypatch.setitem(paper.FULL_MODELS, "yolo", ("dtmm",))
    monkeypatch.setitem(paper.MODEL_EPOCHS, "yolo", 1)
    argv = ["bench", "paper", "--models", "yolo", "--jobs", "1", "--out", str(tmp_path / "b"), "--no-write"]
    assert main(argv) == 0
    md = capsys.readouterr().out
    b = json.loads((tmp_path / "b" / "paper.json").read_text())
    assert b["metrics"] == {"yolo": "AP@0.5"} and b["model_epochs"] == {"yolo": 1}
    assert b["model_data"] == {"yolo": "faces-det"} and "resnet8" in b["left_out"]
    dense = json.loads((tmp_path / "dense" / "yolo-e1" / "dense.json").read_text())
    assert dense["train_seconds"] > 0
    (r,) = b["runs"]
    assert "summary" in r, r
    # one dense int8 model (one calibration set): training script, bench and compress agree
    ap = round(b["dense"]["yolo"]["int8_accuracy"], 4)
    assert dense["test_int8"] == ap == r["summary"]["accuracy"]["int8_before"]
    assert r["summary"]["accuracy"]["metric"] == "AP@0.5" and r["summary"]["const_bytes"] <= r["model_bytes"]
    assert "| yolo | AP@0.5 | dtmm |" in md and "1 fine-tuning epochs" in md
    assert "Data: faces-det (test split, the metric is AP@0.5" in md
    assert main(argv) == 0                            # resumed: the finished run is read back
    assert json.loads((tmp_path / "b" / "paper.json").read_text())["runs"][0]["summary"] == r["summary"]
