"""Fine-tune a pruned model on several processes with DistributedDataParallel, through dtmm's
fine-tuning contract (``dtmm.train.finetune.FineTuneFn``).

This is how a user who outgrows one machine scales the heavy step of compression: the
fine-tuning step is a callable ``fn(model, ctx)``; here it wraps the model in
``DistributedDataParallel`` (gloo backend, CPU), shards the data with a
``DistributedSampler`` and trains. dtmm's ``fine_tune`` calls it on every rank and then
checks, on every rank, that the pruning masks still hold.

Run it (2 processes on this machine)::

    torchrun --standalone --nproc_per_node=2 examples/ddp_finetune.py --out runs/ddp

and the single-process run of the same computation::

    python examples/ddp_finetune.py --single --world 2 --out runs/single

``--single`` runs the same callback in one process, doing for each optimizer step what the
two ranks do together: a forward / backward on each rank's shard of the batch (each with
its own BatchNorm batch statistics, as DDP without SyncBatchNorm, which needs a GPU, does;
running statistics follow rank 0, as DDP's buffer broadcast makes them), the gradients
averaged, one optimizer step. The two runs' weights agree to float rounding (the order of
the gradient sum differs): the test (``tests/test_ddp.py``) requires a largest weight
difference below 1e-5 and identical masks.

Each run writes ``OUT/result.json`` (history, per-rank mask checks, the largest weight
difference between ranks) and ``OUT/weights.pt`` (rank 0's final state dict).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from dtmm.data import load_dataset, split
from dtmm.prune import apply_masks, l2, masks_from_scores
from dtmm.train import EpochStats, FineTuneConfig, FineTuneResult, evaluate, fine_tune
from dtmm.train.finetune import FineTuneContext, FineTuneFn


def build_model(seed: int = 0) -> nn.Module:
    """A small CNN for 8x8 digits (the same on every rank: seeded)."""
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def _bn_buffers(model: nn.Module) -> list[torch.Tensor]:
    return [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in m.buffers()]


def make_ddp_fine_tune(train_set: TensorDataset, per_rank_batch: int, world: int, rank: int,
                       single: bool, report: dict) -> FineTuneFn:
    """A :data:`FineTuneFn` that trains with DDP (``single=False``) or emulates ``world`` ranks."""

    def fn(model: nn.Module, ctx: FineTuneContext) -> FineTuneResult:
        cfg = ctx.config
        ranks = range(world) if single else [rank]
        samplers = [DistributedSampler(train_set, num_replicas=world, rank=r, shuffle=True, seed=cfg.seed,
                                       drop_last=True) for r in ranks]
        loaders = [DataLoader(train_set, batch_size=per_rank_batch, sampler=s, drop_last=True) for s in samplers]
        net = model if single else nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        spe = len(loaders[0])
        total = cfg.epochs * spe
        result = FineTuneResult()
        step = 0
        t0 = time.perf_counter()
        for epoch in range(cfg.epochs):
            t_epoch = time.perf_counter()
            for s in samplers:
                s.set_epoch(epoch)
            net.train()
            loss_sum, seen = 0.0, 0
            for batches in zip(*loaders):
                for g in opt.param_groups:
                    g["lr"] = cfg.schedule.lr(cfg.lr, step, spe, total)
                opt.zero_grad(set_to_none=True)
                saved = None
                for i, (x, y) in enumerate(batches):
                    if single and i == 0:
                        saved = [b.clone() for b in _bn_buffers(model)]
                    elif single:
                        # rank i starts from rank 0's buffers (DDP broadcasts them before each
                        # forward) and its updates are dropped: rank 0's are the ones that survive
                        rank0 = [b.clone() for b in _bn_buffers(model)]
                        for b, v in zip(_bn_buffers(model), saved):
                            b.copy_(v)
                    loss = F.cross_entropy(net(x), y)
                    (loss / len(batches) if single else loss).backward()
                    if single and i > 0:
                        for b, v in zip(_bn_buffers(model), rank0):
                            b.copy_(v)
                    loss_sum += loss.item() * len(y)
                    seen += len(y)
                opt.step()
                step += 1
            ctx.check_masks(net)                      # every rank, every epoch
            report["mask_checks"] = report.get("mask_checks", 0) + 1
            val_acc = val_loss = None
            if ctx.val_loader is not None:
                val_acc, val_loss = evaluate(model, ctx.val_loader)
            result.history.append(EpochStats(epoch + 1, loss_sum / max(seen, 1), float("nan"), val_loss, val_acc,
                                             cfg.schedule.lr(cfg.lr, step - 1, spe, total),
                                             time.perf_counter() - t_epoch))
        result.steps = step
        result.seconds = time.perf_counter() - t0
        if not single:
            # the ranks hold the same weights and masks: compare each with rank 0's. (BatchNorm
            # running statistics are per rank by design: each rank updates them from its own
            # shard after rank 0's are broadcast; rank 0's are the ones saved.)
            worst = 0.0
            for name, t in model.state_dict().items():
                if "running_" in name or "num_batches" in name:
                    continue
                ref = t.detach().clone().float()
                dist.broadcast(ref, src=0)
                worst = max(worst, float((t.detach().float() - ref).abs().max()) if t.numel() else 0.0)
            w = torch.tensor([worst])
            dist.all_reduce(w, op=dist.ReduceOp.MAX)
            report["max_rank_difference"] = float(w)
            # Free DDP (its reducer holds gloo work objects) now, not at interpreter exit: gloo
            # work still alive while Python shuts down aborts the process (SIGABRT).
            del net
            gc.collect()
        return result

    return fn


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--single", action="store_true", help="emulate --world ranks in one process")
    ap.add_argument("--world", type=int, default=2, help="ranks to emulate with --single")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="batch size per rank")
    ap.add_argument("--limit", type=int, default=400, help="digits images used")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    distributed = not args.single
    if distributed:
        dist.init_process_group("gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        world, rank = args.world, 0
    tr, va, _ = split(load_dataset("digits", limit=args.limit), val=0.2, test=0.0, seed=0)
    train_set = TensorDataset(torch.from_numpy(tr.x), torch.from_numpy(tr.y))
    model = build_model(0)
    layers = ["0", "3"]
    masks = masks_from_scores(model, l2(model, layers, "filterlet"), "filterlet", {"0": 0.3, "3": 0.5})
    apply_masks(model, masks)
    report: dict = {"world": world, "rank": rank, "distributed": distributed}
    cfg = FineTuneConfig(epochs=args.epochs, lr=0.05, weight_decay=5e-4, seed=0)
    fn = make_ddp_fine_tune(train_set, args.batch, world, rank, args.single, report)
    res = fine_tune(model, tr, va, config=cfg, fn=fn, quiet=True)   # checks the masks again on return
    report.update(steps=res.steps, val_acc=res.val_acc,
                  history=[{"epoch": h.epoch, "train_loss": h.train_loss, "val_acc": h.val_acc} for h in res.history],
                  masks_kept={k: int(v.sum()) for k, v in res.masks.items()})
    if distributed:
        checks = [None] * world
        dist.all_gather_object(checks, report["mask_checks"])
        report["mask_checks_per_rank"] = checks
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "weights.pt.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, out / "weights.pt")
        tmp = out / "result.json.tmp"
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, out / "result.json")
        print(json.dumps({k: report[k] for k in ("world", "distributed", "steps", "val_acc")}))
    if distributed:
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
