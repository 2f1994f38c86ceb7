"""Fine-tuning under masks (dtmm.train.finetune): masks held, schedules, KD, gradual pruning, contract."""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dtmm.data import load_dataset, split
from dtmm.errors import DtmmError
from dtmm.prune import apply_masks, get_masks, num_pruned, remove_masks, to_ohwi
from dtmm.prune.granularity import FILTERLET
from dtmm.train.finetune import (DatasetLoader, Distillation, FineTuneConfig, FineTuneResult, GradualPruning,
                                 MaskError, fine_tune, polynomial_sparsity)
from dtmm.train.lr import LRSchedule
from dtmm.train.progress import Progress


@pytest.fixture(scope="module")
def digits():
    tr, va, _ = split(load_dataset("digits", limit=600), val=0.2, test=0.0, seed=0)
    return tr, va


def _net(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


def _masked(seed=0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    net = _net(seed)
    g = torch.Generator().manual_seed(seed + 100)
    masks = {"0": torch.rand(8, 1, 3, 3, generator=g) > 0.4,
             "3": (torch.rand(8, 1, 3, 3, generator=g) > 0.5).expand(8, 8, 3, 3).clone(),
             "8": torch.rand(10, 128, generator=g) > 0.3}
    masks["3"][2] = False                              # a dead filter
    apply_masks(net, masks)
    return net, masks


def _assert_masked(net: nn.Module, masks) -> None:
    mods = dict(net.named_modules())
    for name, mk in masks.items():
        w = mods[name].weight.detach()
        assert torch.all(w[~mk] == 0), name
        assert torch.equal(get_masks(net)[name], mk), name


class _Noisy(torch.optim.SGD):
    """An optimizer that writes noise into every stored weight after each step."""

    def step(self, closure=None):
        super().step(closure)
        with torch.no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    p.add_(torch.randn_like(p) * 0.01)


def _checked(factory, net, masks, counter):
    """Wrap an optimizer factory so that the masks are checked after every optimizer step."""
    def make(params):
        opt = factory(params)
        orig = opt.step

        def step(*a, **k):
            out = orig(*a, **k)
            counter.append(1)
            _assert_masked(net, masks)
            return out
        opt.step = step
        return opt
    return make


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "noisy"])
def test_masks_hold_at_every_optimizer_step(digits, name):
    tr, va = digits
    net, masks = _masked()
    base = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-3),
            "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=1e-3),
            "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
            "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5),
            "noisy": lambda ps: _Noisy(ps, lr=0.05)}[name]
    steps = []
    before = copy.deepcopy(net.state_dict())
    res = fine_tune(net, tr, va, config=FineTuneConfig(epochs=1, lr=0.05, batch_size=64,
                                                       optimizer=_checked(base, net, masks, steps)),
                    quiet=True)
    assert len(steps) == res.steps == len(DatasetLoader(tr, 64)) > 0
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())   # it trained
    _assert_masked(net, masks)
    # the masks survive state_dict / a fresh model, and baking leaves exact zeros
    baked = remove_masks(copy.deepcopy(net))
    assert torch.all(baked[3].weight[~masks["3"]] == 0)


def test_finetuning_recovers_accuracy_and_reports_history(digits):
    tr, va = digits
    net, masks = _masked()
    cfg = FineTuneConfig(epochs=3, lr=0.05, batch_size=32, schedule=LRSchedule("cosine", warmup_epochs=0.5))
    res = fine_tune(net, tr, va, config=cfg, quiet=True)
    assert [h.epoch for h in res.history] == [1, 2, 3]
    assert res.val_acc == res.history[-1].val_acc and res.val_acc > 0.5      # 10 classes: chance 0.1
    assert res.history[-1].train_loss < res.history[0].train_loss
    assert all(h.seconds > 0 and h.lr_end >= 0 and h.sparsity is not None for h in res.history)
    assert res.history[-1].lr_end < 0.01 * cfg.lr                              # cosine ends near 0
    assert set(res.masks) == set(masks) and all(torch.equal(res.masks[k], masks[k]) for k in masks)


def test_schedules_as_configured(digits):
    tr, _ = digits
    for sched, want in [(LRSchedule("constant"), [0.02, 0.02]), (LRSchedule("step", gamma=0.5), [0.02, 0.01])]:
        net, _ = _masked()
        res = fine_tune(net, tr, config=FineTuneConfig(epochs=2, lr=0.02, schedule=sched), quiet=True)
        assert [h.lr_end for h in res.history] == pytest.approx(want)


def test_seeded_and_deterministic(digits):
    tr, va = digits
    runs = []
    for seed in (3, 3, 4):
        net, _ = _masked()
        fine_tune(net, tr, va, config=FineTuneConfig(epochs=1, lr=0.05, seed=seed), quiet=True)
        runs.append(net.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_distillation_alpha_zero_is_plain_training_and_kd_pulls_toward_teacher(digits):
    tr, va = digits
    teacher = _net(7)
    fine_tune(teacher, tr, config=FineTuneConfig(epochs=4, lr=0.1, batch_size=32), quiet=True)
    teacher.eval()
    a, _ = _masked()
    b, _ = _masked()
    fine_tune(a, tr, config=FineTuneConfig(epochs=1, lr=0.05), quiet=True)
    fine_tune(b, tr, config=FineTuneConfig(epochs=1, lr=0.05, distill=Distillation(alpha=0.0)),
              teacher=teacher, quiet=True)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())

    # a teacher whose classes are permuted: with alpha = 1 the student learns the teacher's labels
    perm = torch.tensor([3, 7, 0, 9, 1, 5, 8, 2, 6, 4])

    class Permuted(nn.Module):
        def forward(self, x):
            return teacher(x)[:, perm]

    c, _ = _masked()
    fine_tune(c, tr, config=FineTuneConfig(epochs=2, lr=0.05, distill=Distillation(alpha=1.0, temperature=2.0)),
              teacher=Permuted(), quiet=True)

    def agreement(m):
        m.eval()
        with torch.no_grad():
            x = torch.from_numpy(va.x)
            return float((m(x).argmax(1) == Permuted()(x).argmax(1)).float().mean())
    assert agreement(c) > 0.5 > 0.2 > agreement(a)
    with pytest.raises(DtmmError, match="no teacher"):
        fine_tune(_masked()[0], tr, config=FineTuneConfig(epochs=1, distill=Distillation()), quiet=True)


def test_gradual_pruning_follows_the_polynomial_schedule_and_never_revives(digits):
    tr, va = digits
    net, masks = _masked()
    cfg = FineTuneConfig(epochs=2, lr=0.05, batch_size=32,
                         gradual=GradualPruning({"3": 0.75, "0": 0.5}, granularity="filterlet", updates=4))
    res = fine_tune(net, tr, va, config=cfg, quiet=True)
    spe = len(DatasetLoader(tr, 32))
    t_end = int(round(0.75 * 2 * spe))
    assert [s for s, _ in res.pruning_steps] == [int(round(k * t_end / 4)) for k in range(1, 5)]
    final = get_masks(net)
    for name, ratio in {"3": 0.75, "0": 0.5}.items():
        shape = tuple(to_ohwi(final[name]).shape)
        n = FILTERLET.num_units(shape)
        alive = FILTERLET.reduce(to_ohwi(final[name]).numpy().astype(float), shape) > 0
        assert int((~alive).sum()) == max(num_pruned(n, ratio),
                                          int((~(FILTERLET.reduce(to_ohwi(masks[name]).numpy().astype(float),
                                                                  shape) > 0)).sum()))
        assert not torch.any(final[name] & ~masks[name])                     # nothing revived
        seq = [sp[name] for _, sp in res.pruning_steps]
        assert seq == sorted(seq)                                            # monotone
    # layer 3 started at 50% of filterlets; the schedule's intermediate targets
    s_i = 1.0 - float((FILTERLET.reduce(to_ohwi(masks["3"]).numpy().astype(float), (8, 3, 3, 8)) > 0).mean())
    want = [polynomial_sparsity(s, s_i, 0.75, 0, 4, t_end / 4) for s, _ in res.pruning_steps]
    got = [sp["3"] for _, sp in res.pruning_steps]
    assert all(abs(g - w) <= 1.0 / 72 + 1e-9 for g, w in zip(got, want))    # 72 filterlets: one unit
    assert res.history[-1].sparsity > res.history[0].sparsity or res.pruning_steps[-1][0] < spe


def test_gradual_joint_beta_alpha(digits):
    tr, _ = digits
    net = _net()
    cfg = FineTuneConfig(epochs=1, lr=0.05, gradual=GradualPruning({"3": (0.25, 0.5)}, updates=2, end_epoch=0.5))
    fine_tune(net, tr, config=cfg, quiet=True)
    m = to_ohwi(get_masks(net)["3"]).numpy()
    dead = ~m.reshape(8, -1).any(1)
    assert int(dead.sum()) == num_pruned(8, 0.25)
    live_filterlets = m[~dead].any(axis=-1).sum()
    assert live_filterlets == 6 * 9 - num_pruned(6 * 9, 0.5)


def test_user_trainer_contract(digits):
    tr, va = digits
    net, masks = _masked()
    seen = {}

    def mine(model, ctx):
        seen.update(epochs=ctx.epochs, device=ctx.device, masks=set(ctx.masks), teacher=ctx.teacher)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for x, y in ctx.train_loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        ctx.check_masks(model)
        return None

    res = fine_tune(net, tr, va, config=FineTuneConfig(epochs=3), fn=mine, teacher=_net(1))
    assert seen["epochs"] == 3 and seen["masks"] == set(masks) and seen["teacher"] is not None
    assert isinstance(res, FineTuneResult) and res.history == [] and 0 <= res.val_acc <= 1
    _assert_masked(net, masks)

    def cheat(model, ctx):                  # bakes a mask away and revives a weight
        remove_masks(model, ["3"])
        with torch.no_grad():
            model[3].weight[2] = 1.0
    with pytest.raises(MaskError, match="'3' lost its pruning mask"):
        fine_tune(_masked()[0], tr, fn=cheat)

    def revive(model, ctx):
        m = get_masks(model)["3"].clone()
        m[2] = True
        apply_masks(model, {"3": m})
    with pytest.raises(MaskError, match="'3': .* pruned weights were turned back on"):
        fine_tune(_masked()[0], tr, fn=revive)
    with pytest.raises(DtmmError, match="must return a FineTuneResult"):
        fine_tune(_masked()[0], tr, fn=lambda m, c: 42)


def test_progress_lines_when_not_a_terminal(digits, capsys):
    tr, va = digits
    fine_tune(_masked()[0], tr.subset(range(128)), va, config=FineTuneConfig(epochs=2), quiet=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("finetune epoch 1/2: train loss ")
    assert "val acc" in err[0] and "elapsed" in err[1] and err[1].endswith("left")
    fine_tune(_masked()[0], tr.subset(range(128)), config=FineTuneConfig(epochs=1), quiet=True)
    assert capsys.readouterr().err == ""
    buf = io.StringIO()
    p = Progress("x", 3, stream=buf)
    p.epoch_done(1, "a")
    assert "x epoch 1/3: a | elapsed" in buf.getvalue()


def test_loaders_and_validation(digits):
    tr, va = digits
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(tr.x), torch.from_numpy(tr.y)), batch_size=64,
        shuffle=True)
    net, masks = _masked()
    res = fine_tune(net, loader, [(torch.from_numpy(va.x), torch.from_numpy(va.y))],
                    config=FineTuneConfig(epochs=1), quiet=True)
    assert res.steps == len(loader) and res.val_acc is not None
    _assert_masked(net, masks)
    with pytest.raises(DtmmError, match="epochs"):
        FineTuneConfig(epochs=-1)
    with pytest.raises(DtmmError, match="schedule"):
        LRSchedule("linear")
    with pytest.raises(DtmmError, match="unit granularities"):
        fine_tune(_net(), tr, config=FineTuneConfig(epochs=1, gradual=GradualPruning({"3": 0.5},
                                                                                       granularity="pattern")))
