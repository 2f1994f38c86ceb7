"""The planning steps of the pipeline: score a model, solve a plan under budgets, apply it.

* :func:`scheduler_inputs` captures a trained model, builds its decision space, scores
  its units and builds the loss model (Taylor or measured sensitivity) and the cost
  model of a target: everything :func:`dtmm.schedule.plan.solve` needs, computed before
  solving (the solve itself does no I/O);
* :func:`plan_command` is ``dtmm plan``: budgets in, ``plan.json`` out;
* :func:`apply_plan` / :func:`prune_with_plan` is ``dtmm prune --plan``: the model the
  plan describes, exactly (its const bytes and arena are the plan's predictions).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dtmm.errors import DtmmError
from dtmm.schedule.space import ScheduleError

__all__ = ["SchedulerInputs", "scheduler_inputs", "plan_command", "apply_plan", "prune_with_plan",
           "checkpoint_digest", "LOSS_MODELS"]

LOSS_MODELS = ("taylor", "sensitivity")
SCORE_BATCHES = 8
BATCH = 64


@dataclass
class SchedulerInputs:
    """What solving needs, for one model, dataset and target."""

    net: object
    meta: object
    graph: object
    space: object
    scores: object
    cost_model: object
    train_x: np.ndarray
    train_y: np.ndarray


def checkpoint_digest(path) -> str:
    """sha256 of a checkpoint file (a plan records it, applying checks it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _calibration(target: str, calibration: str | None):
    from dtmm.codegen.arena import isa_path
    from dtmm.schedule.flash import CodeSizes, default_code_sizes
    from dtmm.schedule.latency import default_calibration, load_calibration

    if calibration is None:
        lat = default_calibration(target)
        code = default_code_sizes(target)
    else:
        import json

        lat = load_calibration(calibration)
        obj = json.loads(Path(calibration).read_text())
        code = (CodeSizes.from_json(obj["code"], source=str(calibration)) if "code" in obj
                else default_code_sizes(target))
    if lat.target != target:
        raise ScheduleError(f"the calibration is for {lat.target}, not {target}")
    if lat.isa != isa_path(target):
        raise ScheduleError(f"the calibration is for the {lat.isa} path; {target} runs "
                            f"{isa_path(target)}")
    return lat, code


def scheduler_inputs(net, meta, train, val, *, target: str, loss_model: str | None = None,
                     importance: str | None = None, calibration: str | None = None,
                     alpha_step: float | None = None, beta_step: float | None = None,
                     beta_max: float | None = None, method: str = "dtmm",
                     cache_dir=None, progress=None, budgets=None, task=None) -> SchedulerInputs:
    """Capture, space, scores, loss model and cost model of a trained ``net``.

    ``task`` (:mod:`dtmm.train.task`; default classification): the loss the Taylor scores
    and the measured sensitivity use (:mod:`dtmm.pipeline.tasks`); ``train_y`` of the
    result holds the task's targets.

    ``method``: ``dtmm`` or a baseline (:mod:`dtmm.schedule.methods`): its decision space,
    its unit ranking, the same loss model and cost model.

    With ``budgets``, a flash or SRAM budget below what the model can reach is refused
    (:class:`ScheduleError`) before the units are scored.
    """
    from dtmm.graph.capture import capture
    from dtmm.schedule import loss as L
    from dtmm.schedule.costs import CostModel
    if loss_model is None:
        from dtmm.schedule.loss import DEFAULT_LOSS_MODEL

        loss_model = DEFAULT_LOSS_MODEL
    if loss_model not in LOSS_MODELS:
        raise ScheduleError(f"unknown loss model {loss_model!r}; choose from {', '.join(LOSS_MODELS)}")
    say = progress or (lambda m: None)
    lat, code = _calibration(target, calibration)
    g = capture(net, tuple(meta.input_shape))
    from dtmm.schedule.methods import method_scores, method_space

    space = method_space(g, method, alpha_step=alpha_step, beta_step=beta_step, beta_max=beta_max)
    cm = CostModel(space, lat, code=code, target=target)
    if budgets is not None:
        from dtmm.schedule.plan import check_reachable

        check_reachable(cm, budgets)
    from dtmm.pipeline import tasks as T
    from dtmm.train.task import CLASSIFICATION

    task = CLASSIFICATION if task is None else task
    crit = T.loss_fn(task)
    order = np.random.default_rng(0).permutation(len(train))
    tx, ty = train.x[order], T.targets(task, train)[order]
    t0 = time.time()
    if method == "dtmm" and loss_model == "taylor" and importance not in (None, "taylor"):
        raise ScheduleError("the Taylor loss model selects units by their Taylor scores "
                            "(--importance taylor); use --loss-model sensitivity for l1/l2")
    taylor = None
    if loss_model == "taylor":
        taylor = L.unit_scores(net, space, "taylor", tx, ty, batches=SCORE_BATCHES, batch_size=BATCH,
                               loss_fn=crit)
    scores = method_scores(net, space, method, tx, ty, taylor=taylor,
                           importance=importance or ("taylor" if loss_model == "taylor" else "l2"),
                           batches=SCORE_BATCHES, batch_size=BATCH, loss_fn=crit)
    imp = scores.name
    if loss_model == "taylor":
        loss = L.taylor_loss(space, taylor, scores)
    else:
        loss = L.sensitivity_loss(net, space, scores, tx, val.x, T.targets(task, val),
                                  cache_dir=cache_dir, progress=say, loss_fn=crit,
                                  loss_name=T.loss_name(task))
    say(f"scored {len(space.layers)} layers with {imp} ({loss_model} loss model, "
        f"{time.time() - t0:.1f} s)")
    cm.loss = loss
    return SchedulerInputs(net, meta, g, space, scores, cm, tx, ty)


def _default_cache_dir():
    from dtmm.codegen.platform import cache_dir

    return cache_dir() / "sensitivity"


def plan_command(*, checkpoint: str, data: str, out: str, target: str = "cortex-m55",
                 flash=None, ram=None, max_instructions=None, max_loss: float | None = None,
                 objective: str | None = None, solver: str = "anneal", loss_model: str | None = None,
                 importance: str | None = None, calibration: str | None = None, seed: int = 0,
                 iterations: int = 20000, progress=None, method: str = "dtmm",
                 model: str | None = None, model_bytes=None) -> dict:
    """``dtmm plan``: solve a plan for a checkpoint under budgets; write it to ``out``.

    ``model``: the checkpoint's model (zoo name or ``path/to/file.py:factory``; default: the
    one the checkpoint records)."""
    from dtmm.pipeline.data import check_dataset_matches, load_splits
    from dtmm.util.files import check_output_file, write_output_file
    from dtmm.schedule.plan import format_plan, solve
    from dtmm.schedule.problem import Budgets, Problem, parse_count, parse_size
    from dtmm.pipeline import models as M

    budgets = Budgets(flash=parse_size(flash, "--flash") if flash is not None else None,
                      ram=parse_size(ram, "--ram") if ram is not None else None,
                      max_instructions=(parse_count(max_instructions, "--max-instructions")
                                        if max_instructions is not None else None),
                      max_loss=max_loss,
                      model_bytes=parse_size(model_bytes, "--model-bytes") if model_bytes is not None else None)
    if objective is None:
        objective = "instructions" if max_loss is not None else "loss"
    problem = Problem(objective, budgets)
    out_path = Path(out)
    if out_path.is_dir():
        raise DtmmError(f"--out {out}: is a directory; give the plan file's path (e.g. {out}/plan.json)")
    check_output_file(out_path)                  # before any long work
    net, meta = M.load(checkpoint, model)
    ds, tr, va, _ = load_splits(data)
    check_dataset_matches(ds, meta, data)
    from dtmm.pipeline.tasks import choose

    inp = scheduler_inputs(net, meta, tr, va, target=target, loss_model=loss_model,
                           importance=importance, calibration=calibration, method=method,
                           cache_dir=_default_cache_dir(), progress=progress, budgets=budgets,
                           task=choose(ds, net, meta.input_shape))
    plan = solve(inp.cost_model, problem, solver=solver, seed=seed, iterations=iterations)
    plan.meta["method"] = method
    plan.meta.update({"checkpoint": str(checkpoint), "checkpoint_sha256": checkpoint_digest(checkpoint),
                      "model": meta.model_name, "dataset": data,
                      "input_shape": list(meta.input_shape)})
    obj = plan.to_json()
    obj["method"] = method
    write_output_file(out_path, (json.dumps(obj, indent=2) + "\n").encode())
    return {"plan": str(out_path), **obj, "table": format_plan(obj)}


def apply_plan(inp: SchedulerInputs, plan_obj: dict, calib_nhwc: np.ndarray):
    """``(float graph, int8 graph, compressed graph, dead report, strategy)`` of a plan."""
    from dtmm.schedule.apply import mask_model, plan_strategy, pruned_graphs

    s = plan_strategy(inp.space, plan_obj)
    masked, _, _ = mask_model(inp.net, inp.space, s, inp.scores, inp.train_x)
    g, qg, cg, rep = pruned_graphs(masked, inp.meta.input_shape, inp.space, s, calib_nhwc,
                                   library=inp.scores.library)
    return g, qg, cg, rep, s, masked


def prune_with_plan(*, checkpoint: str, data: str, plan: str, out: str, calib_samples: int = 256,
                    eval_samples: int | None = None, progress=None, model: str | None = None) -> dict:
    """``dtmm prune --plan``: write the model a plan describes (``out/model.tflite``);
    ``model`` as in :func:`plan_command`."""
    from dtmm.pipeline.data import check_dataset_matches, load_splits, to_nhwc
    from dtmm.pipeline.evaluate import float_accuracy, int8_predict
    from dtmm.util.files import check_output_path, write_outputs
    from dtmm.graph.float_exec import run_float
    from dtmm.report import inspect_graph
    from dtmm.schedule.plan import load_plan
    from dtmm.tflite.export import to_tflite_bytes
    from dtmm.pipeline import models as M

    out_dir = check_output_path(out, names=("model.tflite", "summary.json"))
    obj = load_plan(plan)
    digest = obj.get("meta", {}).get("checkpoint_sha256")
    if digest and digest != checkpoint_digest(checkpoint):
        raise ScheduleError(f"{plan} was made for another checkpoint (sha256 {digest[:12]}...), "
                            f"not {checkpoint}: plan it again for this one")
    net, meta = M.load(checkpoint, model)
    ds, tr, va, te = load_splits(data)
    check_dataset_matches(ds, meta, data)
    inp = scheduler_inputs(net, meta, tr, va, target=obj["target"], loss_model=obj["loss_model"]
                           if obj["loss_model"] in LOSS_MODELS else "taylor",
                           importance=obj.get("importance"), cache_dir=_default_cache_dir(),
                           progress=progress, method=str(obj.get("method", "dtmm")))
    calib = to_nhwc(inp.train_x[:calib_samples])
    g, qg, cg, rep, s, masked = apply_plan(inp, obj, calib)
    costs = inp.cost_model.evaluate(s)
    model_bytes = to_tflite_bytes(cg)
    xe, ye = (te.x, te.y) if eval_samples is None else (te.x[:eval_samples], te.y[:eval_samples])
    from dtmm.codegen.plan import plan_model

    cplan = plan_model(cg, obj["target"])
    summary = {
        "model": meta.model_name, "dataset": data, "plan": str(plan),
        "float_accuracy_unpruned": round(float_accuracy(net, xe, ye), 4),
        "float_accuracy_pruned": round(float((run_float(g, to_nhwc(xe)).argmax(-1) == ye).mean()), 4),
        "int8_accuracy": round(float((int8_predict(cg, xe).argmax(-1) == ye).mean()), 4),
        "tflite_bytes": len(model_bytes), "const_bytes": cplan.const_bytes,
        "arena_bytes": cplan.arena.size, "predicted": obj["predicted"],
        "prediction_exact": {"const_bytes": cplan.const_bytes == costs.const_bytes,
                             "arena_bytes": cplan.arena.size == costs.arena_bytes},
        "dead_channels": {k: [int(c) for c in v] for k, v in rep.removed.items()},
        "dead_channel_folding_exact": rep.is_exact, "layers": inspect_graph(cg)["layers"],
    }
    write_outputs(out_dir, {"model.tflite": model_bytes,
                                      "summary.json": (json.dumps(summary, indent=2) + "\n").encode()})
    return {"tflite": str(out_dir / "model.tflite"), "summary": str(out_dir / "summary.json"),
            **{k: summary[k] for k in ("float_accuracy_unpruned", "float_accuracy_pruned",
                                       "int8_accuracy", "const_bytes", "arena_bytes",
                                       "prediction_exact")}}
