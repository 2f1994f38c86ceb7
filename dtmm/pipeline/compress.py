"""``dtmm compress``: budgets in, an accurate, verified model out.

Steps, each resumable (:class:`dtmm.pipeline.run.Run`):

1. **dense** - the model to compress: a given checkpoint, or one trained here; its
   float and int8 (post-training quantization) accuracy on the test split;
2. **plan** - the scheduler (:mod:`dtmm.schedule`): per-layer format, filter ratio
   ``beta`` and filterlet ratio ``alpha`` under the flash / SRAM (/ instruction / loss)
   budgets, the budgets checked for reachability before any long work;
3. **fine-tune** - the plan's units masked (:mod:`dtmm.schedule.select`), BatchNorm
   re-estimated, the dead channels removed from the torch model
   (:func:`dtmm.prune.surgery.shrink_model`, so fine-tuning trains the model that is
   deployed), then fine-tuning with the masks held (:func:`dtmm.train.fine_tune`; a
   user's trainer through the same contract), optionally distilled from the dense model;
4. **quantize** - int8 by post-training quantization, and quantization-aware
   fine-tuning when that loses too much (or always / never); the compressed ``.tflite``
   (FWCS layers as custom ops) and its dense equivalent;
   if the int8 accuracy misses the bound, the plan is loosened and steps 2-4 run again
   (a bounded number of *attempts*, each recorded with its reason);
5. **export** - the C project for the target;
6. **verify** - the generated C model on the host and on the target under QEMU, every
   output byte against the NumPy reference; measured flash, SRAM and instructions
   against the budgets;
7. **report** - ``summary.json``, ``report.md`` and ``report.html`` (one self-contained page
   with plots, :mod:`dtmm.pipeline.report_html`); final files written last.

The task comes from the data (:mod:`dtmm.pipeline.tasks`): classification, or detection
for a detection set (``--data faces-det``, a YOLO model); every "accuracy" above and in the
summary is the task's metric (accuracy; AP@0.5), named in ``summary["metric"]``, and the
loss model, fine-tuning (and distillation) use the task's loss.

The same inputs and seed give the same plan and the same output bytes.
"""
from __future__ import annotations

import copy
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dtmm.errors import DtmmError

__all__ = ["CompressConfig", "CompressResult", "compress_command", "METHODS", "QAT_MODES"]

from dtmm.schedule.loss import DEFAULT_LOSS_MODEL
from dtmm.schedule.methods import METHOD_SPACES

METHODS = tuple(METHOD_SPACES)
QAT_MODES = ("auto", "always", "never")


@dataclass
class CompressConfig:
    """Settings of a compress run (the CLI flags; see ``dtmm compress --help``)."""

    target: str = "cortex-m55"
    method: str = "dtmm"
    #: a real board (``dtmm boards``): its core must be ``target``; its flash / SRAM are the
    #: budgets not given, and the firmware is linked against them
    board: str | None = None
    flash: str | int | None = None
    ram: str | int | None = None
    max_instructions: str | float | None = None
    #: the model's constant data alone (weights, index, quantization; no kernel code)
    model_bytes: str | int | None = None
    max_accuracy_drop: float | None = 0.5          # percentage points of the int8 test metric (accuracy; AP@0.5)
    max_loss_increase: float | None = None
    solver: str = "exact"
    loss_model: str = DEFAULT_LOSS_MODEL           # measured; "taylor": the paper's first-order estimate
    epochs: int = 5                                # fine-tuning epochs
    lr: float | None = None                        # fine-tuning lr (None: the task's, 0.01 / 1e-4)
    optimizer: str | None = None                   # sgd (momentum 0.9) | adam | adamw (None: the task's)
    schedule: str = "cosine"                       # fine-tuning lr schedule: cosine | step | constant
    distill: bool = False
    gradual: bool = False                          # reach the plan's alphas gradually (Zhu & Gupta)
    qat: str = "auto"
    qat_epochs: int = 2
    train_epochs: int = 10                         # dense training when no checkpoint is given
    seed: int = 0
    max_attempts: int = 3
    verify_samples: int = 64                       # images run on the target under QEMU
    calib_samples: int = 256


@dataclass
class CompressResult:
    """What :func:`compress_command` (and :func:`dtmm.compress`) return."""

    summary: dict
    plan: dict
    files: dict[str, str]
    model: object = None                            # the fine-tuned (masked, shrunk) torch model
    graph: object = None                            # the compressed int8 IR graph (model.tflite)
    attempts: list = field(default_factory=list)


def _default_cache_dir():
    from dtmm.pipeline.planning import _default_cache_dir as d

    return d()


def _budgets(cfg: CompressConfig):
    from dtmm.schedule.problem import Budgets, parse_count, parse_size

    b = None
    if cfg.board is not None:
        from dtmm.codegen.platform.boards import get_board
        b = get_board(cfg.board)
    return Budgets(flash=(parse_size(cfg.flash, "--flash") if cfg.flash is not None else
                          (b.flash_bytes if b else None)),
                   ram=(parse_size(cfg.ram, "--ram") if cfg.ram is not None else
                        (b.sram_bytes if b else None)),
                   max_instructions=(parse_count(cfg.max_instructions, "--max-instructions")
                                     if cfg.max_instructions is not None else None),
                   max_loss=cfg.max_loss_increase,
                   model_bytes=(parse_size(cfg.model_bytes, "--model-bytes")
                                if cfg.model_bytes is not None else None))


def _target_spec(cfg: CompressConfig):
    """The target the C project is built for: ``cfg.target`` with the board's memory sizes."""
    from dtmm.codegen.platform.boards import resolve_target

    return resolve_target(cfg.target, cfg.board, cfg.target)


def _check_config(cfg: CompressConfig) -> None:
    from dtmm.codegen.platform import TARGETS

    if cfg.method not in METHODS:
        raise DtmmError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    if cfg.target not in TARGETS or cfg.target == "host":
        raise DtmmError(f"unknown target {cfg.target!r}; choose from cortex-m4, cortex-m7, cortex-m55")
    if cfg.qat not in QAT_MODES:
        raise DtmmError(f"--qat must be one of {', '.join(QAT_MODES)}, got {cfg.qat!r}")
    for name in ("epochs", "qat_epochs", "train_epochs", "max_attempts", "verify_samples", "calib_samples"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < (0 if name in ("epochs", "qat_epochs") else 1):
            raise DtmmError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    if cfg.board is not None:
        from dtmm.codegen.platform.boards import resolve_target
        resolve_target(cfg.target, cfg.board, cfg.target)        # the board's core is the target
    if (cfg.flash is None and cfg.ram is None and cfg.max_instructions is None and cfg.board is None
            and cfg.model_bytes is None):
        raise DtmmError("give at least one budget: --flash, --ram, --max-instructions, --model-bytes "
                        "or --board")
    if cfg.max_accuracy_drop is not None and not 0 <= cfg.max_accuracy_drop <= 100:
        raise DtmmError(f"--max-accuracy-drop must be in [0, 100] percentage points, got "
                        f"{cfg.max_accuracy_drop}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise DtmmError(f"--lr must be positive, got {cfg.lr}")
    from dtmm.train.lr import SCHEDULES

    if cfg.schedule not in SCHEDULES:
        raise DtmmError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.optimizer is not None and cfg.optimizer not in ("sgd", "adam", "adamw"):
        raise DtmmError(f"--optimizer must be one of sgd, adam, adamw, got {cfg.optimizer!r}")


# ------------------------------------------------------------------------- helpers


def _state_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _load_state(path: Path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _rebuild(base_net, shrink_channels: dict, state: dict):
    """The fine-tuned model from its saved state: masks, shrink, weights."""
    from dtmm.prune import apply_masks
    from dtmm.prune.masks import load_masked_state_dict
    from dtmm.prune.surgery import rebuild_shrunk

    gm = rebuild_shrunk(copy.deepcopy(base_net), shrink_channels)
    apply_masks(gm, state["masks"])
    load_masked_state_dict(gm, state["weights"])
    return gm.eval()


def _beta_only(plan: dict, keep=frozenset()) -> dict:
    """The plan with every alpha set to 0 (filters removed, filterlets all kept), but for the
    layers named in ``keep`` (fully connected ones: their runs are pruned at once, the
    gradual schedule follows convolution filterlets)."""
    out = copy.deepcopy(plan)
    for ly in out["layers"]:
        if ly["name"] not in keep:
            ly["alpha"] = 0.0
    return out


def _exact_filterlets(gm, plan: dict, skip=frozenset()) -> None:
    """Masks of exactly the plan's kept filterlets per FWCS layer of the (shrunk) model ``gm``,
    chosen by the L2 norm of the current weights with the rule of
    :func:`dtmm.schedule.select.keep_filterlets` (at least one per filter)."""
    import torch

    from dtmm.prune import apply_masks
    from dtmm.schedule.select import keep_filterlets

    mods = dict(gm.named_modules())
    masks = {}
    for ly in plan["layers"]:
        if ly["format"] != "fwcs" or ly["alpha"] == 0 or ly["name"] in skip:
            continue
        w = mods[ly["name"]].weight.detach()                 # (O, I, KH, KW), masked view
        o, i, kh, kw = w.shape
        scores = torch.sqrt((w.double() ** 2).sum(dim=1)).reshape(o, kh * kw).numpy()
        keep = keep_filterlets(scores, np.ones(o, bool), int(ly["kept_filterlets"]))
        masks[ly["name"]] = torch.from_numpy(keep.reshape(o, 1, kh, kw)).expand(o, i, kh, kw).contiguous()
    apply_masks(gm, masks)


# ------------------------------------------------------------------------- the run


def compress_command(*, model: str | None, data: str, out: str, config: CompressConfig,
                     checkpoint: str | None = None, resume: bool = False, quiet: bool = False,
                     fine_tune_fn=None) -> CompressResult:
    """Run ``dtmm compress`` (see the module docstring); returns a :class:`CompressResult`."""
    from dtmm.pipeline.data import load_splits
    from dtmm.pipeline import models as M
    from dtmm.pipeline.run import Run

    _check_config(config)
    budgets = _budgets(config)
    if model is None and checkpoint is None:
        raise DtmmError("give --model (to train it here) or --checkpoint (a trained model)")
    digest = None
    if checkpoint is not None:
        from dtmm.pipeline.planning import checkpoint_digest

        if not Path(checkpoint).is_file():
            raise DtmmError(f"--checkpoint {checkpoint}: no such file")
        digest = checkpoint_digest(checkpoint)
    ds, tr, va, te = load_splits(data)
    from dtmm.pipeline.tasks import check_splits, check_zoo_model, choose

    check_zoo_model(model, ds)                          # a detector needs detection data, ...
    if checkpoint is not None:
        from dtmm.pipeline.data import check_dataset_matches

        probe, meta = M.load(checkpoint, model)
        check_dataset_matches(ds, meta, data)          # before the run folder is created
    else:
        probe = M.build(model, ds.input_shape, ds.num_classes)
    task = choose(ds, probe, ds.input_shape)           # ... and a model with a head of its task
    check_splits(task, train=tr, validation=va, test=te)
    check_before_work(probe, ds.input_shape, config, budgets)
    inputs = {"model": model, "checkpoint": str(checkpoint) if checkpoint else None,
              "checkpoint_sha256": digest, "data": data, "config": asdict(config)}
    run = Run(out, kind="compress", inputs=inputs, resume=resume, quiet=quiet, steps=7)
    ctx = _Compress(run, config, budgets, model, checkpoint, data, ds, tr, va, te, fine_tune_fn,
                    task=task)
    return ctx.run()


def check_before_work(net, input_shape, config: CompressConfig, budgets) -> None:
    """Refuse, before any training or scoring, a model dtmm cannot capture (naming the op)
    and budgets below what the architecture can reach."""
    from dtmm.graph.capture import capture
    from dtmm.pipeline.planning import _calibration
    from dtmm.schedule.costs import CostModel
    from dtmm.schedule.plan import check_reachable
    from dtmm.schedule.problem import Budgets
    from dtmm.schedule.methods import method_space

    g = capture(net.eval(), tuple(input_shape))
    lat, code = _calibration(config.target, None)
    cm = CostModel(method_space(g, config.method), lat, code=code, target=config.target)
    check_reachable(cm, Budgets(flash=budgets.flash, ram=budgets.ram, model_bytes=budgets.model_bytes))


class _Compress:
    def __init__(self, run, cfg, budgets, model, checkpoint, data, ds, tr, va, te, fine_tune_fn,
                 net=None, ft_data=None, task=None):
        from dtmm.train.task import CLASSIFICATION

        self.task = CLASSIFICATION if task is None else task
        #: the fine-tuning learning rate: the user's, else the task's default
        self.lr = cfg.lr if cfg.lr is not None else self.task.finetune_lr
        self.optimizer = cfg.optimizer if cfg.optimizer is not None else self.task.finetune_optimizer
        self.run_ = run
        self.cfg = cfg
        self.budgets = budgets
        self.model_spec = model
        self.checkpoint = checkpoint
        self.data = data
        self.ds, self.tr, self.va, self.te = ds, tr, va, te
        self.fine_tune_fn = fine_tune_fn
        self.given_net = net                      # the Python API's trained model
        self.ft_train, self.ft_val = ft_data if ft_data is not None else (tr, va)
        self.attempts: list[dict] = []

    # -- 1. dense
    def dense(self):
        from dtmm.pipeline.data import check_dataset_matches
        from dtmm.pipeline.evaluate import quantize_model
        from dtmm.pipeline import models as M
        from dtmm.pipeline.tasks import float_metric, int8_metric
        from dtmm.train import save_checkpoint, train

        cfg = self.cfg

        def step():
            import torch

            arts = {}
            if self.given_net is not None:
                net = self.given_net
                src, epochs = "given (Python API)", None
            elif self.checkpoint is not None:
                net, meta = M.load(self.checkpoint, self.model_spec)
                check_dataset_matches(self.ds, meta, self.data)
                src = str(self.checkpoint)
                epochs = meta.extra.get("epochs")
            else:
                torch.manual_seed(cfg.seed)
                net = M.build(self.model_spec, self.ds.input_shape, self.ds.num_classes)
                train(net, self.tr, self.va, epochs=cfg.train_epochs, batch_size=64, lr=2e-3,
                      optimizer="adam", seed=cfg.seed, progress=not self.run_.quiet, task=self.task)
                buf = self.run_.artifact("dense.pt")
                buf.parent.mkdir(parents=True, exist_ok=True)
                save_checkpoint(buf, net, model_name=self.model_spec, input_shape=self.ds.input_shape,
                                num_classes=self.ds.num_classes, dataset=self.data,
                                extra={"seed": cfg.seed, "epochs": cfg.train_epochs})
                arts["dense.pt"] = buf.read_bytes()
                src = "trained here"
                epochs = cfg.train_epochs
            net.eval()
            _, qg = quantize_model(net, self.ds.input_shape, self._calib_x())
            from dtmm.tflite.export import to_tflite_bytes

            arts["dense_int8.tflite"] = to_tflite_bytes(qg)
            fa = float_metric(self.task, net, self.te)
            ia = int8_metric(self.task, qg, self.te)
            return ({"source": src, "train_epochs": epochs, "float_before": round(fa, 4),
                     "int8_before": round(ia, 4),
                     "summary": f"{'' if self.task.metric_name == 'accuracy' else self.task.metric_name + ' '}"
                                f"float {fa:.4f}, int8 {ia:.4f} on "
                                f"{len(self.te)} test images"}, arts)

        res = self.run_.step("dense", "dense model", step)
        if self.given_net is not None:
            net, meta = self.given_net, self.given_meta
        elif self.checkpoint is not None:
            net, meta = M.load(self.checkpoint, self.model_spec)
        else:
            net, meta = M.load(self.run_.artifact("dense.pt"), self.model_spec)
        self.net, self.meta = net.eval(), meta
        return res

    def _seconds(self, a: int) -> dict:
        """Seconds per step behind attempt ``a``; ``plan{a}`` includes the scores and loss
        tables measured (or read from the cache) just before it."""
        out = {}
        for k in ["dense", f"plan{a}", f"finetune{a}", f"quantize{a}", "export", "verify"]:
            st = self.run_.load(k)
            if st:
                out[k] = round(st["seconds"] + st.get("inputs_seconds", 0.0), 1)
        return out

    def _calib_x(self):
        from dtmm.pipeline.evaluate import calibration_images

        return calibration_images(self.tr, self.cfg.calib_samples)

    # -- 2-4. attempts
    def attempt(self, a: int, settings: dict):
        from dtmm.pipeline.planning import scheduler_inputs
        from dtmm.schedule.plan import solve
        from dtmm.schedule.problem import Budgets, Problem

        cfg = self.cfg
        b = self.budgets
        b_plan = Budgets(flash=b.flash, ram=b.ram,         # solve() aims under flash by its margin
                         max_instructions=b.max_instructions, max_loss=settings.get("max_loss"),
                         model_bytes=b.model_bytes)
        t_inputs = time.time()
        inp = scheduler_inputs(self.net, self.meta, self.tr, self.va, target=cfg.target,
                               loss_model=settings["loss_model"], budgets=b_plan, method=cfg.method,
                               cache_dir=_default_cache_dir(),
                               progress=self.run_.say, task=self.task)
        self.inp = inp
        # the unit scores and loss tables (measured, or read from the cache) before the plan:
        # often the longest part of a first attempt, counted in the plan's seconds (summary)
        t_inputs = round(time.time() - t_inputs, 1)
        objective = "instructions" if b_plan.max_loss is not None else "loss"

        def plan_step():
            plan = solve(inp.cost_model, Problem(objective, b_plan), solver=cfg.solver, seed=cfg.seed)
            obj = plan.to_json()
            obj["method"] = cfg.method
            pr = obj["predicted"]
            return ({"plan": obj, "inputs_seconds": t_inputs,
                     "summary": f"{pr['flash_bytes']:,} B flash, {pr['sram_bytes']:,} B "
                                f"SRAM, {pr['instructions']:,} instructions predicted"},
                    None)

        plan = self.run_.step(f"plan{a}", f"plan (attempt {a})", plan_step)["plan"]
        ft = self.run_.step(f"finetune{a}", f"prune and fine-tune (attempt {a})",
                            lambda: self._finetune(a, plan, settings))
        q = self.run_.step(f"quantize{a}", f"quantize (attempt {a})",
                           lambda: self._quantize(a, plan, ft, settings))
        return plan, ft, q

    def _finetune(self, a: int, plan: dict, settings: dict):
        import torch

        from dtmm.pipeline.tasks import float_metric
        from dtmm.prune import get_masks
        from dtmm.prune.surgery import shrink_model
        from dtmm.schedule.apply import mask_model, plan_strategy
        from dtmm.train.finetune import Distillation, FineTuneConfig, fine_tune
        from dtmm.train.lr import LRSchedule

        cfg = self.cfg
        inp = self.inp
        s = plan_strategy(inp.space, plan)
        fc = frozenset(ly.name for ly in inp.space.layers if ly.kind == "fc")
        gradual = bool(settings.get("gradual")) and any(ly["alpha"] > 0 for ly in plan["layers"]
                                                        if ly["name"] not in fc)
        if gradual:          # whole filters now (group-consistent), filterlets gradually below
            s_beta = plan_strategy(inp.space, _beta_only(plan, fc))
            masked, fl, removed = mask_model(self.net, inp.space, s_beta, inp.scores, inp.train_x)
        else:
            masked, fl, removed = mask_model(self.net, inp.space, s, inp.scores, inp.train_x)
        # masks on the pruned units stay through fine-tuning
        from dtmm.prune import apply_masks
        from dtmm.schedule.loss import torch_masks

        apply_masks(masked, torch_masks(inp.space, fl, removed, masked))
        shr = shrink_model(masked, self.meta.input_shape)
        gm = shr.model
        acc0 = float_metric(self.task, gm, self.va)
        epochs = settings["epochs"]
        grad = None
        if gradual:
            from dtmm.train.finetune import GradualPruning

            final = {ly["name"]: 1.0 - ly["kept_filterlets"] / (ly["c_out"] * inp.space.layer(ly["name"]).positions)
                     for ly in plan["layers"] if ly["format"] == "fwcs" and ly["alpha"] > 0
                     and ly["name"] not in fc}
            grad = GradualPruning(final, granularity="filterlet", scorer="l2")
        ftc = FineTuneConfig(epochs=epochs, lr=self.lr, optimizer=self.optimizer, seed=cfg.seed + a,
                             schedule=LRSchedule(cfg.schedule),
                             distill=Distillation() if settings["distill"] else None, gradual=grad,
                             task=self.task)
        history = []
        teacher = copy.deepcopy(self.net).eval() if settings["distill"] else None
        if epochs > 0:
            torch.manual_seed(cfg.seed + a)
            res = fine_tune(gm, self.ft_train, self.ft_val, config=ftc, teacher=teacher,
                            fn=self.fine_tune_fn, quiet=self.run_.quiet)
            history = [asdict(h) for h in res.history]
        if gradual:          # the plan's exact kept filterlets, then one epoch with them fixed
            _exact_filterlets(gm, plan, skip=fc)
            res = fine_tune(gm, self.ft_train, self.ft_val, teacher=teacher, fn=self.fine_tune_fn,
                            config=FineTuneConfig(epochs=1, lr=self.lr / 10, optimizer=self.optimizer,
                                                  seed=cfg.seed + a, schedule=LRSchedule("constant"),
                                                  distill=Distillation() if settings["distill"] else None,
                                                  task=self.task),
                            quiet=self.run_.quiet)
            history += [asdict(h) for h in res.history]
        gm.eval()
        fa_val = float_metric(self.task, gm, self.va)
        fa = float_metric(self.task, gm, self.te)
        state = {"masks": {k: v.clone() for k, v in get_masks(gm).items()},
                 "weights": {k: v.clone() for k, v in gm.state_dict().items()}}
        return ({"channels": shr.channels_json(), "val_accuracy_before": round(acc0, 4),
                 "val_accuracy": round(fa_val, 4), "float_after": round(fa, 4), "epochs": epochs,
                 "distill": settings["distill"], "gradual": gradual, "history": history,
                 "summary": f"val {self.task.metric_name} {acc0:.4f} after pruning -> {fa_val:.4f} "
                            f"after {epochs} epochs; float test {fa:.4f}"},
                {f"finetune{a}.pt": _state_bytes(state)})

    def _finetuned(self, a: int, ft: dict):
        state = _load_state(self.run_.artifact(f"finetune{a}.pt"))
        return _rebuild(self.net, ft["channels"], state)

    def _quantize(self, a: int, plan: dict, ft: dict, settings: dict):
        from dtmm.pipeline.data import to_nhwc
        from dtmm.pipeline.tasks import int8_metric
        from dtmm.graph.capture import capture
        from dtmm.graph.compressed import dense_equivalent
        from dtmm.quant.quantize import quantize_graph
        from dtmm.tflite.export import to_tflite_bytes

        cfg = self.cfg
        from dtmm.prune import remove_masks

        gm = self._finetuned(a, ft)
        calib = to_nhwc(self._calib_x())
        baked = remove_masks(copy.deepcopy(gm))            # pruned weights stay exactly zero
        g = capture(baked, tuple(self.meta.input_shape))
        qg = quantize_graph(g, [calib[i:i + 64] for i in range(0, len(calib), 64)])
        cg = self._compress(g, qg, plan)
        ptq = int8_metric(self.task, cg, self.te)
        how, acc, qat_info = "ptq", ptq, None
        bound = self._int8_floor()
        want_qat = cfg.qat == "always" or (cfg.qat == "auto" and bound is not None and ptq < bound
                                           and cfg.qat_epochs > 0)
        if want_qat:
            cg_q, qat_acc, qat_info = self._qat(a, gm, plan, calib)
            # PTQ or QAT: chosen on the validation split (the test split only reports)
            ptq_val, qat_val = (int8_metric(self.task, cg, self.va), int8_metric(self.task, cg_q, self.va))
            qat_info.update(val_int8_accuracy=round(qat_val, 4), val_int8_accuracy_ptq=round(ptq_val, 4))
            if qat_val >= ptq_val or cfg.qat == "always":
                cg, how, acc = cg_q, "qat", qat_acc
        model_bytes = to_tflite_bytes(cg)
        dense_bytes = to_tflite_bytes(dense_equivalent(cg))
        res = {"quantization": how, "int8_after_ptq": round(ptq, 4), "int8_after": round(acc, 4),
               "qat": qat_info, "tflite_bytes": len(model_bytes),
               "summary": f"int8 test {self.task.metric_name} {acc:.4f} ({how}{'; PTQ ' + format(ptq, '.4f') if how == 'qat' else ''})"}
        return res, {f"model{a}.tflite": model_bytes, f"model_dense{a}.tflite": dense_bytes}

    def _compress(self, g, qg, plan):
        """Each compressed layer stored with exactly its kept units (the float graph's
        non-zero filterlets / weights; int8 rounding may zero a kept weight)."""
        from dtmm.graph.compressed import compress_graph
        from dtmm.schedule.apply import kept_units_mask

        formats, masks, libraries = {}, {}, {}
        for ly in plan["layers"]:
            fmt = ly["format"]
            if fmt == "dense":
                continue
            formats[ly["name"]] = fmt
            masks[ly["name"]] = kept_units_mask(fmt, g.op(ly["name"]).weight)
            if fmt == "pattern":
                libraries[ly["name"]] = self.inp.scores.library
        return compress_graph(qg, formats, masks, libraries=libraries or None) if formats else qg

    def _qat(self, a: int, gm, plan, calib):
        import torch

        from dtmm.pipeline.tasks import int8_metric
        from dtmm.quant.fake import prepare_qat, quantize_qat
        from dtmm.train.finetune import FineTuneConfig, fine_tune
        from dtmm.train.lr import LRSchedule

        cfg = self.cfg
        q = prepare_qat(copy.deepcopy(gm))
        torch.manual_seed(cfg.seed + 100 + a)
        fine_tune(q, self.tr, self.va, config=FineTuneConfig(epochs=cfg.qat_epochs, lr=self.lr / 10,
                                                              optimizer=self.optimizer, seed=cfg.seed + a,
                                                              schedule=LRSchedule("cosine"), task=self.task),
                  quiet=self.run_.quiet)
        q.eval()
        g, qg = quantize_qat(q, tuple(self.meta.input_shape),
                             [calib[i:i + 64] for i in range(0, len(calib), 64)])
        cg = self._compress(g, qg, plan)
        acc = int8_metric(self.task, cg, self.te)
        return cg, acc, {"epochs": cfg.qat_epochs, "int8_accuracy": round(acc, 4)}

    def _int8_floor(self) -> float | None:
        if self.cfg.max_accuracy_drop is None:
            return None
        return self.dense_res["int8_before"] - self.cfg.max_accuracy_drop / 100.0

    # -- 5-7
    def export(self, a: int):
        from dtmm.codegen.emit import project_files
        from dtmm.codegen.plan import plan_model
        from dtmm.tflite.reader import read_tflite

        def step():
            from dtmm.util.files import write_outputs

            cg = read_tflite(self.run_.artifact(f"model{a}.tflite").read_bytes())
            p = plan_model(cg, _target_spec(self.cfg))
            files = {f"project/{k}": v for k, v in project_files(p).items()}
            write_outputs(self.run_.out, files, group="project")
            return ({"const_bytes": p.const_bytes, "arena_bytes": p.arena.size,
                     "files": sorted(files), "summary": f"C project for {self.cfg.target}: "
                                                        f"{len(files)} files, {p.const_bytes:,} B of model data"},
                    None)

        return self.run_.step("export", "export the C project", step)

    def verify(self, a: int):
        from dtmm.codegen.backends import build_firmware, build_host_model, run_firmware
        from dtmm.codegen.platform import toolchain_available
        from dtmm.pipeline.verify import op_profile
        from dtmm.quant.quantize import quantize_input
        from dtmm.runtime.reference import run_reference
        from dtmm.tflite.reader import read_tflite
        from dtmm.pipeline.data import to_nhwc
        from dtmm.pipeline.verify import run_firmware_progress

        cfg = self.cfg

        def step():
            cg = read_tflite(self.run_.artifact(f"model{a}.tflite").read_bytes())
            qin = cg.tensors[cg.inputs[0]].qparams
            x = quantize_input(to_nhwc(self.te.x), qin)
            ref = np.concatenate([run_reference(cg, x[i:i + 256]) for i in range(0, len(x), 256)])
            host = build_host_model(cg)(x)
            out = {"host": {"samples": int(len(x)), "bit_exact": bool(np.array_equal(host, ref)),
                            "mismatches": int((host != ref).sum()),
                            "accuracy": self._outputs_metric(cg, host, self.te)}}
            why = toolchain_available(cfg.target)
            backend = {"cortex-m55": "qemu-m55", "cortex-m7": "qemu-m7", "cortex-m4": "qemu-m4"}[cfg.target]
            if why is not None:
                out[backend] = {"skipped": f"QEMU / arm-none-eabi-gcc not available ({why}); install "
                                           f"them with: apt-get install qemu-system-arm gcc-arm-none-eabi "
                                           f"libnewlib-arm-none-eabi"}
            else:
                n = min(cfg.verify_samples, len(x))
                res = run_firmware_progress(build_firmware(cg, _target_spec(cfg)), x[:n], self.run_.say,
                                            backend)
                ok = bool(np.array_equal(res.outputs, ref[:n]))
                dq = read_tflite(self.run_.artifact("dense_int8.tflite").read_bytes())
                dres = run_firmware(build_firmware(dq, cfg.target), x[:1])
                out["dense_on_target"] = {"flash_bytes": dres.flash_bytes, "ram_bytes": dres.ram_bytes,
                                          "const_bytes": dres.const_bytes,
                                          "instructions_per_inference": dres.instructions_per_inference}
                out[backend] = {"samples": n, "bit_exact": ok, "mismatches": int((res.outputs != ref[:n]).sum()),
                                "accuracy": self._outputs_metric(cg, res.outputs, self.te.subset(np.arange(n))),
                                "instructions_per_inference": res.instructions_per_inference,
                                "instructions_note": "executed instructions counted by QEMU (not cycles)",
                                "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes,
                                "arena_bytes": res.arena_bytes, "const_bytes": res.const_bytes}
                # one profiled build run on one image: each op's instructions, for the report
                # (the emulator's memory map: the markers' code must not overflow a small board)
                out[backend].update(op_profile(cg, cfg.target, x[:1], res.outputs[:1],
                                               res.instructions_per_inference))
            good = all(v.get("bit_exact", True) for v in out.values())
            dense_ref = out.pop("dense_on_target", None)
            return ({"verify": out, "dense_on_target": dense_ref, "summary": ", ".join(
                f"{k}: {'bit-exact' if v.get('bit_exact') else ('skipped' if 'skipped' in v else 'MISMATCH')}"
                + (f" on {v['samples']} images" if "samples" in v else "") for k, v in out.items()),
                "all_bit_exact": good}, None)

        return self.run_.step("verify", "verify on the host and the target", step)

    def _outputs_metric(self, graph, q, ds) -> float | None:
        """The task's metric of a backend's int8 outputs; ``None`` where it is undefined (a
        few detection images without a box)."""
        from dtmm.errors import DataError
        from dtmm.pipeline.tasks import outputs_metric

        try:
            return round(outputs_metric(self.task, graph, q, ds), 4)
        except DataError:
            return None

    # -- driver
    def run(self) -> CompressResult:
        cfg = self.cfg
        self.dense_res = self.dense()
        floor = self._int8_floor()
        settings = {"loss_model": cfg.loss_model, "epochs": cfg.epochs, "distill": cfg.distill,
                    "gradual": cfg.gradual, "max_loss": cfg.max_loss_increase}
        chosen = None
        for a in range(1, cfg.max_attempts + 1):
            plan, ft, q = self.attempt(a, settings)
            met = floor is None or q["int8_after"] >= floor - 1e-9
            self.attempts.append({"attempt": a, "settings": dict(settings),
                                  "int8_after": q["int8_after"], "float_after": ft["float_after"],
                                  "accuracy_bound_met": bool(met),
                                  "predicted": plan["predicted"]})
            if chosen is None or q["int8_after"] > chosen[3]["int8_after"]:
                chosen = (a, plan, ft, q)
            if met:
                break
            # loosen: a better loss estimate, then less pruning / more fine-tuning
            nxt = dict(settings)
            if settings["max_loss"] is not None:
                nxt["max_loss"] = settings["max_loss"] / 2
                reason = "loss budget halved (less pruning)"
            elif settings["loss_model"] == "taylor":
                nxt["loss_model"] = "sensitivity"
                reason = "measured-sensitivity loss model instead of Taylor"
            else:
                nxt["epochs"] = settings["epochs"] * 2 or 2
                nxt["distill"] = True
                reason = "twice the fine-tuning epochs, with distillation"
            self.attempts[-1]["next"] = reason
            if a < cfg.max_attempts:
                self.run_.say(f"      int8 {self.task.metric_name} {q['int8_after']:.4f} misses the bound {floor:.4f}: "
                              f"attempt {a + 1} with {reason}")
            settings = nxt
        a, plan, ft, q = chosen
        exp = self.export(a)
        ver = self.verify(a)
        return self.report(a, plan, ft, q, exp, ver)

    def report(self, a, plan, ft, q, exp, ver) -> CompressResult:
        from dtmm.pipeline.report import size_breakdown
        from dtmm.pipeline.report_html import report_files
        from dtmm.tflite.reader import read_tflite
        from dtmm.util.files import write_outputs

        b = self.budgets
        target_v = next((v for k, v in ver["verify"].items() if k.startswith("qemu") and "flash_bytes" in v), None)
        budgets = {"flash_bytes": b.flash, "sram_bytes": b.ram, "max_instructions": b.max_instructions,
                   "max_loss_increase": b.max_loss, "model_bytes": b.model_bytes,
                   "max_accuracy_drop_pp": self.cfg.max_accuracy_drop}
        met = {}
        stack = plan["predicted"].get("stack_bytes", 16 * 1024)
        if b.flash is not None:
            v = target_v["flash_bytes"] if target_v else plan["predicted"]["flash_bytes"]
            met["flash"] = {"budget": b.flash, "value": v, "met": v <= b.flash,
                            "measured": target_v is not None}
        if b.model_bytes is not None:
            met["model_bytes"] = {"budget": b.model_bytes, "value": exp["const_bytes"],
                                  "met": exp["const_bytes"] <= b.model_bytes, "measured": True,
                                  "note": "the generated model's constant data"}
        if b.ram is not None:
            v = (target_v["ram_bytes"] + stack) if target_v else plan["predicted"]["sram_bytes"]
            met["sram"] = {"budget": b.ram, "value": v, "met": v <= b.ram, "measured": target_v is not None,
                           "note": f"firmware RAM + {stack:,} B stack"}
        if b.max_instructions is not None:
            v = target_v["instructions_per_inference"] if target_v else plan["predicted"]["instructions"]
            met["instructions"] = {"budget": b.max_instructions, "value": v, "met": v <= b.max_instructions,
                                   "measured": target_v is not None}
        floor = self._int8_floor()
        acc = {"float_before": self.dense_res["float_before"], "int8_before": self.dense_res["int8_before"],
               "float_after": ft["float_after"], "int8_after": q["int8_after"],
               "test_images": int(len(self.te)), "metric": self.task.metric_name}
        if floor is not None:
            met["accuracy"] = {"bound": round(floor, 4), "value": q["int8_after"],
                               "met": q["int8_after"] >= floor - 1e-9}
        summary = {
            "model": self.model_spec or self.dense_res["source"], "dataset": self.data,
            "target": self.cfg.target, "method": self.cfg.method,
            "task": self.task.name, "metric": self.task.metric_name,
            "flash_bytes": target_v["flash_bytes"] if target_v else plan["predicted"]["flash_bytes"],
            "const_bytes": exp["const_bytes"], "arena_bytes": exp["arena_bytes"],
            "ram_bytes": target_v["ram_bytes"] if target_v else plan["predicted"]["ram_bytes"],
            "instructions_per_inference": (target_v["instructions_per_inference"] if target_v
                                           else plan["predicted"]["instructions"]),
            "tflite_bytes": q["tflite_bytes"], "budgets": budgets, "budgets_met": met,
            "accuracy": acc, "quantization": q["quantization"], "plan": plan,
            "attempts": self.attempts, "chosen_attempt": a, "verify": ver["verify"],
            "dense_on_target": ver.get("dense_on_target"),
            "size_breakdown": size_breakdown(
                read_tflite(self.run_.artifact("dense_int8.tflite").read_bytes()),
                read_tflite(self.run_.artifact(f"model{a}.tflite").read_bytes())),
            "fine_tuning": {"epochs": ft["epochs"], "distill": ft["distill"], "lr": self.lr,
                            "optimizer": self.optimizer, "history": ft["history"],
                            "val_accuracy_after_pruning": ft["val_accuracy_before"]},
            "dense": {"source": self.dense_res["source"], "train_epochs": self.dense_res["train_epochs"]},
            "seconds": self._seconds(a),
        }
        files = {"model.tflite": self.run_.artifact(f"model{a}.tflite").read_bytes(),
                 "model_dense.tflite": self.run_.artifact(f"model_dense{a}.tflite").read_bytes(),
                 "plan.json": (json.dumps(plan, indent=1) + "\n").encode(),
                 "summary.json": (json.dumps(summary, indent=1) + "\n").encode(),
                 **report_files(summary)}
        write_outputs(self.run_.out, files)
        out = self.run_.out
        self.run_.summary(f"[7/7] report: {out / 'report.md'}, {out / 'report.html'}")
        return CompressResult(summary, plan, {k: str(out / k) for k in files} | {"project": str(out / "project")},
                              model=self._finetuned(a, ft).eval(),
                              graph=read_tflite(files["model.tflite"]), attempts=self.attempts)
