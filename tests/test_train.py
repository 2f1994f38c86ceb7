"""Tests of dtmm.train: trainer, evaluation, callbacks, checkpoints. Kept fast (toy amounts)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn

import dtmm.train.augment
import dtmm.train.checkpoint
import dtmm.train.trainer
from dtmm.data import load_dataset, split
from dtmm.errors import DataError, ModelFileError
from dtmm.train import (
    Compose, RandomHFlip, RandomShift, TrainError, cosine_lr, evaluate, load_checkpoint,
    save_checkpoint, train,
)
from dtmm.zoo import build_model


@pytest.fixture(scope="module")
def digits():
    tr, va, te = split(load_dataset("digits"), val=0.1, test=0.2, seed=0)
    return tr, va, te


def _tiny(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- trainer

def test_one_epoch_beats_chance(digits):
    tr, va, te = digits
    model = _tiny()
    res = train(model, tr, va, epochs=1, lr=0.1, seed=0, progress=False)
    assert len(res.history) == 1 and res.steps == -(-len(tr) // 64)
    assert res.val_acc is not None and res.val_acc > 0.5
    acc, loss = evaluate(model, te)
    assert acc > 0.5 and 0 < loss < np.log(10)
    assert model.training  # mode restored


def test_adam_and_stats(digits):
    tr, va, _ = digits
    res = train(_tiny(), tr, va, epochs=2, lr=0.01, optimizer="adam", seed=1, progress=False)
    assert [h.epoch for h in res.history] == [1, 2]
    assert res.history[1].train_loss < res.history[0].train_loss
    assert res.final.lr_end == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_weights(digits):
    tr, _, _ = digits
    a, b, c = _tiny(), _tiny(), _tiny()
    train(a, tr, epochs=1, lr=0.05, seed=3, progress=False, augment=RandomShift(1))
    train(b, tr, epochs=1, lr=0.05, seed=3, progress=False, augment=RandomShift(1))
    train(c, tr, epochs=1, lr=0.05, seed=4, progress=False, augment=RandomShift(1))
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


def test_training_leaves_global_rng_alone(digits):
    tr, _, _ = digits
    model = _tiny()
    torch.manual_seed(9)
    expected = torch.rand(3)
    torch.manual_seed(9)
    train(model, tr.subset(range(100)), epochs=1, lr=0.05, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_callback_keeps_mask_applied(digits):
    tr, _, _ = digits
    model = _tiny()
    mask = torch.ones_like(model[0].weight)
    mask[:4] = 0  # prune half the filters
    steps = []

    def keep_mask(step, m):
        steps.append(step)
        with torch.no_grad():
            m[0].weight.mul_(mask)

    res = train(model, tr, epochs=1, lr=0.05, progress=False, callback=keep_mask)
    assert steps == list(range(1, res.steps + 1))
    assert model[0].weight[:4].abs().sum() == 0 and model[0].weight[4:].abs().sum() > 0


def test_divergence_raises(digits):
    tr, _, _ = digits

    def poison(step, m):
        with torch.no_grad():
            m[-1].weight.fill_(float("nan"))

    with pytest.raises(TrainError, match="step 2"):
        train(_tiny(), tr, epochs=1, lr=0.05, progress=False, callback=poison)


def test_bad_arguments(digits):
    tr, _, _ = digits
    with pytest.raises(ValueError, match="optimizer"):
        train(_tiny(), tr, epochs=1, lr=0.1, optimizer="lion", progress=False)
    with pytest.raises(DataError):
        train(_tiny(), tr.subset([]), epochs=1, lr=0.1, progress=False)
    with pytest.raises(DataError):
        evaluate(_tiny(), tr.subset([]))


def test_single_leftover_image_is_skipped(digits):
    tr, _, _ = digits
    res = train(_tiny(), tr.subset(range(65)), epochs=1, lr=0.05, progress=False)
    assert res.steps == 1


def test_cosine_lr():
    assert cosine_lr(1.0, 0, 100) == 1.0
    assert cosine_lr(1.0, 50, 100) == pytest.approx(0.5)
    assert cosine_lr(1.0, 100, 100) == pytest.approx(0.0)


def test_augmentations_are_seeded():
    x = torch.rand(4, 1, 6, 6)
    aug = Compose([RandomShift(2), RandomHFlip(0.5)])
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)


# --------------------------------------------------------------------------- checkpoints

def _saved(tmp_path, name="resnet8", shape=(1, 8, 8), classes=10, **kw):
    model = build_model(name, shape, classes, seed=0)
    # make BN statistics non-default so the round trip checks buffers too
    model.train()
    with torch.no_grad():
        model(torch.rand(4, *shape))
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, model, model_name=name, input_shape=shape, num_classes=classes, **kw)
    return model, path


def test_checkpoint_round_trip(tmp_path):
    model, path = _saved(tmp_path, dataset="digits", extra={"val_acc": 0.93, "ratios": [0.5, 0.25]})
    loaded, meta = load_checkpoint(path, expected_model="resnet8")
    assert _same_weights(model, loaded) and not loaded.training
    assert meta.model_name == "resnet8" and meta.input_shape == (1, 8, 8)
    assert meta.num_classes == 10 and meta.dataset == "digits"
    assert meta.extra == {"val_acc": 0.93, "ratios": [0.5, 0.25]}
    x = torch.rand(2, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), loaded(x))
    assert [p.name for p in tmp_path.iterdir()] == ["resnet8.pt"]  # no temp file left


def test_checkpoint_overwrite_is_atomic_replace(tmp_path):
    _, path = _saved(tmp_path)
    m2 = build_model("resnet8", (1, 8, 8), 10, seed=1)
    save_checkpoint(path, m2, model_name="resnet8", input_shape=(1, 8, 8), num_classes=10)
    loaded, _ = load_checkpoint(path)
    assert _same_weights(m2, loaded)
    assert len(list(tmp_path.iterdir())) == 1


def test_truncated_checkpoint(tmp_path):
    _, path = _saved(tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_garbage_missing_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelFileError, match="junk.pt: not a torch.save file"):
        load_checkpoint(junk)
    with pytest.raises(ModelFileError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save(build_model("resnet8", (1, 8, 8), 10).state_dict(), plain)
    with pytest.raises(ModelFileError, match="not a dtmm checkpoint"):
        load_checkpoint(plain)


def test_checkpoint_of_another_model(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ModelFileError, match="'resnet8', expected 'vgg11'"):
        load_checkpoint(path, expected_model="vgg11")
    with pytest.raises(ModelFileError, match="missing keys: .*unexpected keys"):
        load_checkpoint(path, model=build_model("dscnn", (1, 8, 8), 10))
    with pytest.raises(ModelFileError, match=r"fc.weight: file \(10, 64\) vs model \(5, 64\)"):
        load_checkpoint(path, model=build_model("resnet8", (1, 8, 8), 5))


def test_checkpoint_custom_model_needs_model_argument(tmp_path):
    model = _tiny()
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, model_name="tiny", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ModelFileError, match="pass model="):
        load_checkpoint(path)
    loaded, meta = load_checkpoint(path, model=_tiny(seed=1))
    assert _same_weights(model, loaded) and meta.model_name == "tiny"


def test_checkpoint_rejects_unstorable_extra(tmp_path):
    with pytest.raises(TypeError, match="extra"):
        save_checkpoint(tmp_path / "x.pt", _tiny(), model_name="tiny", input_shape=(1, 8, 8),
                        num_classes=10, extra={"fn": print})
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_unwritable_dir(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(ModelFileError, match="cannot write"):
        save_checkpoint(tmp_path / "afile" / "x.pt", _tiny(), model_name="tiny",
                        input_shape=(1, 8, 8), num_classes=10)


def test_checkpoint_creates_missing_directories(tmp_path):
    p = save_checkpoint(tmp_path / "new" / "dir" / "x.pt", _tiny(), model_name="tiny",
                        input_shape=(1, 8, 8), num_classes=10)
    assert p.is_file() and [f.name for f in p.parent.iterdir()] == ["x.pt"]


# --------------------------------------------------------------------------- docstrings

@pytest.mark.parametrize("module", [dtmm.train.trainer, dtmm.train.checkpoint, dtmm.train.augment])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
