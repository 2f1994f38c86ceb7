"""The pruning-strategy scheduler: space, exact cost model, solvers, plans, CLI."""
import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from dtmm.codegen.plan import plan_model
from dtmm.data import load_dataset
from dtmm.graph.capture import capture
from dtmm.schedule.anneal import anneal
from dtmm.schedule.apply import mask_model, plan_strategy, pruned_graphs
from dtmm.schedule.costs import CostModel, Strategy
from dtmm.schedule.exact import solve_exact
from dtmm.schedule.flash import default_code_sizes
from dtmm.schedule.latency import OpShape, default_calibration, fit
from dtmm.schedule.loss import TableLoss, sensitivity_loss, taylor_loss, unit_scores
from dtmm.schedule.plan import build_plan, check_reachable, format_plan, load_plan, solve
from dtmm.schedule.problem import Budgets, Problem, parse_count, parse_size, violations
from dtmm.schedule.space import ScheduleError, alpha_grid, beta_grid, build_space
from dtmm.zoo import MODEL_NAMES, build_model

from _helpers import needs_qemu, realistic_bn


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", limit=256, seed=0)
    return ds.x.astype(np.float32), ds.y


def _cost_model(net, shape=(1, 8, 8), target="cortex-m55", **kw):
    sp = build_space(capture(net, shape), **kw)
    return CostModel(sp, default_calibration(target), code=default_code_sizes(target), target=target)


def _random_strategy(cm, rng):
    sp = cm.space
    return Strategy(tuple(int(rng.integers(len(sp.betas))) if g.pinned is None else 0 for g in sp.groups),
                    tuple(int(rng.integers(len(o))) for o in cm.options))


# ----------------------------------------------------------------------------- space


def test_residual_adds_tie_channel_groups():
    net = build_model("resnet8", (1, 8, 8), 10)
    sp = build_space(capture(net, (1, 8, 8)))
    by_layer = {ly.name: ly.out_group for ly in sp.layers}
    # the stem's output is added to the first block's output: one group
    assert by_layer["stem.conv"] == by_layer["layers.0.conv2.conv"]
    assert by_layer["layers.1.conv2.conv"] == by_layer["layers.1.shortcut"]
    assert by_layer["layers.0.conv1.conv"] not in (by_layer["stem.conv"], by_layer["layers.1.conv1.conv"])
    g = sp.groups[by_layer["stem.conv"]]
    assert set(g.producers) == {"stem.conv", "layers.0.conv2.conv"} and g.pinned is None
    assert sp.groups[by_layer["fc"]].pinned == "graph output"
    # 1x1 convs prune through beta only; fully connected layers take dense or FWCS runs
    assert sp.options(sp.layer("layers.1.shortcut")) == [("dense", 0.0), ("fwcs", 0.0)]
    assert sp.options(sp.layer("fc"))[:3] == [("dense", 0.0), ("fwcs", 0.0), ("fwcs", 0.05)]
    assert len(sp.options(sp.layer("fc"))) == 1 + len(sp.alphas)
    assert len(sp.options(sp.layer("stem.conv"))) == 1 + len(sp.alphas)


def test_grids_and_their_errors():
    assert alpha_grid(0.5) == (0.0, 0.5)
    assert beta_grid(0.25, 0.5) == (0.0, 0.25, 0.5)
    with pytest.raises(ScheduleError, match="step"):
        alpha_grid(0)
    with pytest.raises(ScheduleError, match="start at 0"):
        build_space(capture(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 4, 4)), alphas=(0.5,))


# ----------------------------------------------------------------------------- one truth


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_predicted_const_bytes_and_arena_equal_the_generated_model(name, digits):
    """Random plans (filters across residual adds, FWCS filterlets), applied: the generated
    model's const bytes and arena are exactly the predictions, on M55 (MVE) and M4 (DSP)."""
    x, _ = digits
    torch.manual_seed(0)
    net = realistic_bn(build_model(name, (1, 8, 8), 10), seed=1).eval()
    rng = np.random.default_rng(len(name))
    for target in ("cortex-m55", "cortex-m4"):
        cm = _cost_model(net, target=target)
        sp = cm.space
        scores = unit_scores(net, sp, "l2")
        for k in range(2):
            s = _with_pruned_fc(cm, _random_strategy(cm, rng), rng) if k == 0 else _random_strategy(cm, rng)
            c = cm.evaluate(s)
            masked, _, _ = mask_model(net, sp, s, scores, x)
            _, _, cg, _ = pruned_graphs(masked, (1, 8, 8), sp, s, x[:64].transpose(0, 2, 3, 1).copy())
            if k == 0:                          # the FC is stored as FWCS runs, as planned
                assert any(op.kind == "compressed_fully_connected" for op in cg.ops), name
            p = plan_model(cg, target)
            assert (p.const_bytes, p.arena.size) == (c.const_bytes, c.arena_bytes), (name, target, s)


def _with_pruned_fc(cm, s, rng):
    """``s`` with every fully connected layer FWCS at a random alpha > 0."""
    opts = list(s.options)
    for li, ly in enumerate(cm.space.layers):
        if ly.kind == "fc":
            o = cm.options[li]
            choices = [i for i, (f, a) in enumerate(o) if f == "fwcs" and a > 0] or \
                [i for i, (f, _) in enumerate(o) if f == "fwcs"]
            opts[li] = int(rng.choice(choices))
    return Strategy(s.betas, tuple(opts))


def _pooled(c=40):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    return realistic_bn(net, seed=2).eval()


@pytest.mark.parametrize("kind", ["flattened", "pooled"])
def test_pruned_fc_after_channel_removal_is_exact_and_bit_exact_on_the_host(kind, digits):
    """An FWCS FC whose input channels shrink with beta: on a flattened map (8x8 positions,
    NHWC columns: the torch mask is permuted back) or a pooled vector (40 or 25 inputs: a
    short last run in every row). The FC's runs are those of its pruned inputs; predicted
    bytes, arena and the fc_fwcs latency shape equal the generated model's, and the
    generated C (host) equals the reference bit for bit."""
    from dtmm.codegen.backends import build_host_model
    from dtmm.runtime.reference import run_reference
    from dtmm.schedule.latency import op_shape

    x, y = digits
    net = _tiny(digits) if kind == "flattened" else _pooled()
    cm = _cost_model(net, betas=(0.0, 0.375))
    sp = cm.space
    scores = unit_scores(net, sp, "taylor", x, y, batches=2)
    fc = next(ly for ly in sp.layers if ly.kind == "fc")
    g_in = sp.layers[1].out_group                       # the conv feeding the FC
    oi = sp.options(fc).index(("fwcs", 0.7 if kind == "flattened" else 0.3))
    rng = np.random.default_rng(0)
    xq = rng.integers(-128, 128, size=(4, 8, 8, 1)).astype(np.int8)
    ins = []
    for beta in (0, 1):
        betas = tuple(beta if gi == g_in else 0 for gi in range(len(sp.groups)))
        s = Strategy(betas, (0, 0, oi))
        c = cm.evaluate(s)
        lc = cm.layer_costs(s)[2]
        masked, _, _ = mask_model(net, sp, s, scores, x)
        _, _, cg, _ = pruned_graphs(masked, (1, 8, 8), sp, s, x[:64].transpose(0, 2, 3, 1).copy())
        op = next(o for o in cg.ops if o.kind == "compressed_fully_connected")
        assert op.fmt.shape == (10, lc.c_in) and op.fmt.n_filterlets == lc.kept < 10 * -(-lc.c_in // 16)
        assert op_shape(op, cg) == OpShape("fc_fwcs", 1, 1, lc.c_in, 10, kept=lc.kept,
                                           tail=10 if lc.c_in % 16 else 0)
        p = plan_model(cg, "cortex-m55")
        assert (p.const_bytes, p.arena.size) == (c.const_bytes, c.arena_bytes), beta
        assert np.array_equal(build_host_model(cg)(xq), run_reference(cg, xq))
        ins.append(lc.c_in)
    assert ins == ([512, 320] if kind == "flattened" else [40, 25])


# ----------------------------------------------------------------------------- solvers


def _small_problem(loss_scale: float = 1.0):
    """A 3-conv residual net with coarse grids and made-up loss tables (brute-forceable)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)
            self.c = nn.Conv2d(8, 16, 3, padding=1, stride=2)
            self.fc = nn.Linear(16 * 4 * 4, 4)

        def forward(self, x):
            a = torch.relu(self.a(x))
            b = torch.relu(self.b(a) + a)
            return self.fc(torch.flatten(torch.relu(self.c(b)), 1))

    torch.manual_seed(0)
    cm = _cost_model(Net(), alphas=(0.0, 0.3, 0.6, 0.9), betas=(0.0, 0.25, 0.5))
    sp = cm.space
    assert ("fwcs", 0.9) in sp.options(sp.layer("fc"))         # the FC's runs are in the space
    rng = np.random.default_rng(3)
    groups = [np.concatenate([[0.0], np.cumsum(rng.random(len(sp.betas) - 1))]) if g.pinned is None
              else np.zeros(len(sp.betas)) for g in sp.groups]
    layers = []
    for ly in sp.layers:
        opts = sp.options(ly)
        t = np.array([[0.0 if f == "dense" else a * rng.uniform(0.5, 1.5) for f, a in opts]])
        layers.append(t)
    cm.loss = TableLoss("test", [g * loss_scale for g in groups], [t * loss_scale for t in layers],
                        "l2").bind(sp)
    return cm


def _brute_force(cm, problem):
    sp = cm.space
    free = [g.index for g in sp.groups if g.pinned is None]
    best = None
    for bs in itertools.product(range(len(sp.betas)), repeat=len(free)):
        betas = [0] * len(sp.groups)
        for g, b in zip(free, bs):
            betas[g] = b
        for opts in itertools.product(*[range(len(o)) for o in cm.options]):
            s = Strategy(tuple(betas), tuple(opts))
            c = cm.evaluate(s)
            if not violations(c, problem.budgets):
                v = problem.value(c)
                if best is None or v < best[0] - 1e-9:
                    best = (v, s, c)
    return best


@pytest.mark.parametrize("objective,loss_scale", [("loss", 1.0), ("instructions", 1.0),
                                                  ("instructions", 1e-7)])
def test_exact_solver_equals_brute_force(objective, loss_scale):
    """Also with loss tables far below HiGHS's feasibility tolerance (1e-7 of these; Taylor's
    on a converged VGG-11 are about 1e-4): the plan must not be left over its loss budget."""
    cm = _small_problem(loss_scale)
    dense = cm.evaluate(cm.dense_strategy())
    for frac in (0.8, 0.6):          # of the const data (the code does not shrink)
        flash = int(dense.flash_bytes - (1 - frac) * dense.const_bytes)
        max_loss = None
        if objective == "instructions":     # 1.5x the least loss change reachable at that flash
            max_loss = 1.5 * _brute_force(cm, Problem("loss", Budgets(flash=flash)))[0]
        b = Budgets(flash=flash, ram=dense.sram_bytes, max_loss=max_loss)
        problem = Problem(objective, b)
        want = _brute_force(cm, problem)
        got = solve_exact(cm, problem)
        assert want is not None and got.feasible
        assert problem.value(got.costs) == pytest.approx(want[0], rel=1e-6, abs=1e-9 * loss_scale)
        # the annealer finds a feasible point too (its gap is measured by the benchmark)
        r = anneal(cm, problem, iterations=4000, seed=0)
        assert r.feasible and not violations(r.costs, b)
        assert problem.value(r.costs) >= want[0] - 1e-9 * loss_scale


def test_model_bytes_budget_bounds_the_constant_data_alone():
    """``model_bytes`` limits the model's constant data (b), not the firmware flash: the
    exact solver equals brute force under it, the annealer meets it, and a budget below
    every layer pruned as far as the grids go is refused naming the least reachable."""
    cm = _small_problem()
    dense = cm.evaluate(cm.dense_strategy())
    b = Budgets(model_bytes=int(0.6 * dense.const_bytes))
    problem = Problem("loss", b)
    want = _brute_force(cm, problem)
    got = solve_exact(cm, problem)
    assert want is not None and got.feasible
    assert got.costs.const_bytes <= b.model_bytes
    assert problem.value(got.costs) == pytest.approx(want[0], rel=1e-6, abs=1e-12)
    r = anneal(cm, problem, iterations=4000, seed=0)
    assert r.feasible and r.costs.const_bytes <= b.model_bytes
    # the same number as a flash budget binds harder: the firmware's code counts there
    assert not violations(got.costs, b) and violations(got.costs, Budgets(flash=b.model_bytes))
    with pytest.raises(ScheduleError, match=r"model-data budget 100 B is below the smallest"):
        check_reachable(cm, Budgets(model_bytes=100))


@pytest.mark.parametrize("method", ["dtmm", "chip", "patdnn", "unstructured"])
def test_model_bytes_reachable_in_every_method_space(method):
    """The least model data a method's space holds is its sparsest formats' bytes (not the
    RAM-least choice, which for CSR / pattern is dense): a budget of 40 % of the dense
    constants is reachable by every method on a model that is nearly all convolutions."""
    from dtmm.schedule.methods import method_space

    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(8),
                        nn.Flatten(), nn.Linear(32, 4))
    torch.manual_seed(0)
    g = capture(net, (1, 8, 8))
    cm = CostModel(method_space(g, method), default_calibration("cortex-m55"),
                   code=default_code_sizes("cortex-m55"), target="cortex-m55")
    dense = cm.evaluate(cm.dense_strategy(), with_loss=False)
    check_reachable(cm, Budgets(model_bytes=int(0.4 * dense.const_bytes)))


def test_anneal_is_reproducible():
    cm = _small_problem()
    dense = cm.evaluate(cm.dense_strategy())
    p = Problem("loss", Budgets(flash=int(dense.flash_bytes - 0.3 * dense.const_bytes)))
    a = anneal(cm, p, iterations=3000, seed=7)
    b = anneal(cm, p, iterations=3000, seed=7)
    assert a.strategy == b.strategy and a.costs == b.costs


def test_infeasible_budgets_name_what_is_reachable():
    cm = _small_problem()
    with pytest.raises(ScheduleError, match=r"flash budget 1,000 B is below the smallest firmware"):
        check_reachable(cm, Budgets(flash=1000))
    with pytest.raises(ScheduleError, match=r"SRAM budget 2,000 B .* peak at op"):
        check_reachable(cm, Budgets(ram=2000))
    dense = cm.evaluate(cm.dense_strategy())
    tight = Budgets(flash=int(dense.flash_bytes - 0.4 * dense.const_bytes), max_loss=1e-9)
    with pytest.raises(ScheduleError, match="no strategy meets all the budgets"):
        solve(cm, Problem("instructions", tight), solver="exact")


# ----------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("text,want", [("512KB", 524288), ("0.5MiB", 524288), ("65536", 65536),
                                       ("64k", 65536), ("2 MB", 2 * 1024 * 1024), (1000, 1000)])
def test_parse_size(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("text", ["-3KB", "abc", "0", "12XB", "", "nan", True])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(ScheduleError):
        parse_size(text)


def test_parse_count_and_budget_checks():
    assert parse_count("3M") == 3e6
    with pytest.raises(ScheduleError):
        parse_count("-1")
    with pytest.raises(ScheduleError, match="loss budget"):
        Budgets(max_loss=-1.0)
    with pytest.raises(ScheduleError, match="needs a loss budget"):
        Problem("instructions", Budgets(flash=1000))


# ----------------------------------------------------------------------------- latency


def test_latency_fit_recovers_a_linear_model():
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(30):
        s = OpShape("fwcs", out_h=int(rng.integers(2, 16)), out_w=int(rng.integers(2, 16)),
                    c_in=int(rng.integers(1, 100)), c_out=int(rng.integers(1, 64)), kh=3, kw=3,
                    kept=int(rng.integers(10, 500)))
        slots = -(-s.out_h * s.out_w // 4) * 4            # the kernel's 4-pixel blocks
        n = 3.0 * slots * s.kept * -(-s.c_in // 16) + 20 * slots * s.c_out + 500
        samples.append((s, n))
    coef, stats = fit(samples, "mve")
    assert coef["fwcs"]["macs"] == pytest.approx(3.0, rel=1e-4)
    assert stats["fwcs"]["max_rel_error"] < 1e-6


def test_calibration_files_are_validated(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"format": "dtmm-latency-calibration", "target": "cortex-m55",
                               "isa": "mve", "coef": {"conv": {"macs": -1}}}))
    from dtmm.schedule.latency import load_calibration

    with pytest.raises(ScheduleError, match=r"conv.macs must be a finite value >= 0"):
        load_calibration(bad)
    bad.write_text("not json")
    with pytest.raises(ScheduleError, match="not a JSON calibration"):
        load_calibration(bad)
    with pytest.raises(ScheduleError, match="no shipped calibration"):
        default_calibration("cortex-m0")


def test_board_csv_fit(tmp_path):
    from dtmm.schedule.calibrate import CSV_COLUMNS, from_board_csv

    rows = [",".join(CSV_COLUMNS)]
    for h in (4, 8, 16):
        for co in (8, 16):
            cycles = 2.0 * h * h * co * 9 + 300
            rows.append(f"conv,{h},{h},16,{co},3,3,{h},{h},0,{cycles}")
    p = tmp_path / "board.csv"
    p.write_text("\n".join(rows) + "\n")
    m = from_board_csv(p, "cortex-m55", "mve")
    assert m.unit == "cycles" and m.meta["train"]["max_rel_error"] < 0.05
    p.write_text("kind,out_h\nconv,4\n")
    with pytest.raises(ScheduleError, match="missing column"):
        from_board_csv(p, "cortex-m55", "mve")
    p.write_text(",".join(CSV_COLUMNS) + "\nconv,4,4,16,8,3,3,4,4,0,abc\n")
    with pytest.raises(ScheduleError, match="line 2"):
        from_board_csv(p, "cortex-m55", "mve")
    # the optional geometry columns reach the op shapes: cycles proportional to the taps
    # inside the input fit exactly only if stride and padding were read
    from dtmm.schedule.latency import OpShape
    rows = [",".join(CSV_COLUMNS) + ",stride_h,stride_w,pad_t,pad_l"]
    for h in (4, 6, 8, 10, 12, 16):
        for st, pad in ((1, 1), (2, 0), (2, 1)):
            o = (h + 2 * pad - 3) // st + 1
            sh = OpShape("max_pool", o, o, 16, 16, 3, 3, h, h, stride_h=st, stride_w=st, pad_t=pad,
                         pad_l=pad)
            rows.append(f"max_pool,{o},{o},16,16,3,3,{h},{h},0,{7.0 * sh.taps_inside + 50},"
                        f"{st},{st},{pad},{pad}")
    p.write_text("\n".join(rows) + "\n")
    m = from_board_csv(p, "cortex-m55", "mve")
    assert m.meta["train"]["samples"] == 18 and m.meta["train"]["max_rel_error"] < 1e-6


# ----------------------------------------------------------------------------- loss models


def _tiny(digits):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    return realistic_bn(net, seed=2).eval()


def test_taylor_loss_tables_are_the_removed_units_scores(digits):
    x, y = digits
    net = _tiny(digits)
    sp = build_space(capture(net, (1, 8, 8)))
    scores = unit_scores(net, sp, "taylor", x, y, batches=2)
    loss = taylor_loss(sp, scores)
    ly = sp.layer("3")
    g = sp.groups[ly.out_group]
    # removing 2 of 8 filters costs the 2 smallest filter scores of the group
    bi = list(sp.betas).index(0.25)
    assert loss.groups[g.index][bi] == pytest.approx(np.sort(scores.filters["3"])[:2].sum())
    # alpha = 0.5 on all filters: the removed filterlets' scores, never a whole filter
    oi = sp.options(ly).index(("fwcs", 0.5))
    assert 0 < loss.layers[ly.index][0, oi] < scores.filterlets["3"].sum()
    assert loss.layers[ly.index][0, 0] == 0.0
    # the FC's filterlets are its runs of 16 inputs (IR column order): Taylor |sum dL/dw * w|
    fc = sp.layer("7")
    assert scores.filterlets["7"].shape == (10, 32)
    oi = sp.options(fc).index(("fwcs", 0.5))
    removed = np.sort(scores.filterlets["7"].ravel())[:160].sum()
    assert loss.layers[fc.index][0, oi] == pytest.approx(removed)


def test_sensitivity_loss_is_measured_and_cached(digits, tmp_path):
    x, y = digits
    net = _tiny(digits)
    sp = build_space(capture(net, (1, 8, 8)), alphas=(0.0, 0.5, 0.9), betas=(0.0, 0.5))
    scores = unit_scores(net, sp, "l2")
    a = sensitivity_loss(net, sp, scores, x, x[:64], y[:64], alphas=(0.5, 0.9), bn_batches=2,
                         cache_dir=tmp_path)
    assert len(list(tmp_path.glob("sensitivity-*.json"))) == 1
    ly = sp.layer("3")
    oi9 = sp.options(ly).index(("fwcs", 0.9))
    assert a.layers[ly.index][0, oi9] != 0.0           # pruning 90 % changes the loss
    fc = sp.layer("7")                                  # so does 90 % of the FC's runs
    assert a.layers[fc.index][0, sp.options(fc).index(("fwcs", 0.9))] != 0.0
    b = sensitivity_loss(net, sp, scores, x, x[:64], y[:64], alphas=(0.5, 0.9), bn_batches=2,
                         cache_dir=tmp_path)
    assert all(np.array_equal(p, q) for p, q in zip(a.layers, b.layers))


@pytest.mark.parametrize("method,fmt", [("unstructured", "csr"), ("patdnn", "pattern")])
def test_sensitivity_loss_measures_the_baselines_formats(digits, method, fmt):
    """CSR and pattern options get measured loss changes too (a table of zeros would make
    fine pruning look free to the scheduler, and the comparison unfair)."""
    from dtmm.schedule.methods import method_scores, method_space

    x, y = digits
    net = _tiny(digits)
    sp = method_space(capture(net, (1, 8, 8)), method, alpha_step=0.45)
    scores = method_scores(net, sp, method, x, y, importance="l2", batches=2)
    a = sensitivity_loss(net, sp, scores, x, x[:64], y[:64], alphas=(0.45, 0.9), bn_batches=2)
    ly = sp.layer("3")
    opts = sp.options(ly)
    hi = max((o for o in opts if o[0] == fmt), key=lambda o: o[1])
    assert hi[1] >= 0.9
    assert a.layers[ly.index][0, opts.index(hi)] != 0.0


# ----------------------------------------------------------------------------- plans


def test_plan_file_roundtrip_and_validation(tmp_path):
    cm = _small_problem()
    s = cm.dense_strategy()
    plan = build_plan(cm, Problem("loss", Budgets()), s, cm.evaluate(s), solver="anneal")
    obj = plan.to_json()
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(obj))
    back = load_plan(p)
    assert plan_strategy(cm.space, back) == s
    assert "flash" in format_plan(back)
    bad = dict(obj, layers=[dict(obj["layers"][0], alpha=1.5)] + obj["layers"][1:])
    p.write_text(json.dumps(bad))
    with pytest.raises(ScheduleError, match=r"layers\[0\] .*alpha = 1.5"):
        load_plan(p)
    p.write_text("{]")
    with pytest.raises(ScheduleError, match="not a JSON plan"):
        load_plan(p)
    with pytest.raises(ScheduleError, match="is a directory"):
        load_plan(tmp_path)
    wrong = dict(obj, layers=obj["layers"][:-1])
    with pytest.raises(ScheduleError, match="missing layer"):
        plan_strategy(cm.space, wrong)


@needs_qemu
def test_cli_plan_then_prune_with_plan_runs_bit_exact_on_m55(tmp_path, capsys):
    """dtmm train -> plan (budget well under dense) -> prune --plan -> verify on qemu-m55."""
    from dtmm.cli import main

    ck = tmp_path / "m"
    assert main(["train", "--model", "resnet8", "--data", "digits", "--epochs", "1", "--limit", "300",
                 "--out", str(ck), "--quiet"]) == 0
    capsys.readouterr()
    plan = tmp_path / "plan.json"
    rc = main(["plan", "--checkpoint", str(ck / "checkpoint.pt"), "--data", "digits",
               "--flash", "64KB", "--ram", "64KB", "--objective", "min-loss", "--solver", "exact",
               "--out", str(plan), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    obj = json.loads(plan.read_text())
    assert obj["predicted"]["flash_bytes"] <= 64 * 1024 and obj["predicted"]["sram_bytes"] <= 64 * 1024
    assert "stem.conv" in out and "budget 65,536" in out
    rc = main(["prune", "--checkpoint", str(ck / "checkpoint.pt"), "--data", "digits",
               "--plan", str(plan), "--out", str(tmp_path / "pruned"), "--eval-samples", "64"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["prediction_exact"] == {"const_bytes": True, "arena_bytes": True}
    assert res["const_bytes"] == obj["predicted"]["const_bytes"]
    rc = main(["verify", str(tmp_path / "pruned" / "model.tflite"), "--backend", "qemu-m55",
               "--data", "digits", "--samples", "4", "--json"])
    v = json.loads(capsys.readouterr().out)
    assert rc == 0 and v["bit_exact"]
    assert v["flash_bytes"] <= 64 * 1024
    assert abs(v["flash_bytes"] - obj["predicted"]["flash_bytes"]) <= 0.01 * v["flash_bytes"]


def test_cli_plan_refuses_unreachable_budgets_before_scoring(tmp_path, capsys):
    from dtmm.cli import main
    from dtmm.train import save_checkpoint

    net = build_model("resnet8", (1, 8, 8), 10)
    save_checkpoint(tmp_path / "c.pt", net, model_name="resnet8", input_shape=(1, 8, 8), num_classes=10)
    rc = main(["plan", "--checkpoint", str(tmp_path / "c.pt"), "--data", "digits", "--flash", "2KB",
               "--objective", "min-loss", "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "below the smallest firmware this model can reach" in err
    assert not (tmp_path / "p.json").exists()
    rc = main(["plan", "--checkpoint", str(tmp_path / "c.pt"), "--data", "digits", "--flash=-3KB",
               "--objective", "min-loss", "--out", str(tmp_path / "p.json")])
    assert rc == 2 and "must be positive" in capsys.readouterr().err


# ----------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("method", ["dtmm", "chip", "l1-filter", "patdnn", "unstructured"])
def test_every_method_plans_exactly_what_is_generated(method, digits):
    """Each method's space, ranking and Taylor tables; random plans applied: the generated
    model's const bytes and arena equal the predictions; the exact solver meets a budget."""
    from dtmm.schedule.methods import METHOD_SPACES, method_scores, method_space

    x, y = digits
    torch.manual_seed(0)
    net = realistic_bn(build_model("resnet8", (1, 8, 8), 10), seed=1).eval()
    sp = method_space(capture(net, (1, 8, 8)), method)
    ms = METHOD_SPACES[method]
    assert (len(sp.betas) > 1) == ms.filters and (len(sp.alphas) > 1) == ms.fine
    assert {f for ly in sp.layers for f, _ in sp.options(ly)} <= set(ms.formats)
    cm = CostModel(sp, default_calibration("cortex-m55"), code=default_code_sizes("cortex-m55"))
    tay = unit_scores(net, sp, "taylor", x, y, batches=2)
    sel = method_scores(net, sp, method, x, y, taylor=tay, batches=2)
    cm.loss = taylor_loss(sp, tay, sel)
    rng = np.random.default_rng(5)
    for _ in range(2):
        s = _random_strategy(cm, rng)
        c = cm.evaluate(s)
        masked, _, _ = mask_model(net, sp, s, sel, x)
        _, _, cg, _ = pruned_graphs(masked, (1, 8, 8), sp, s, x[:64].transpose(0, 2, 3, 1).copy(),
                                    library=sel.library)
        p = plan_model(cg, "cortex-m55")
        assert (p.const_bytes, p.arena.size) == (c.const_bytes, c.arena_bytes), (method, s)
        if method == "patdnn":
            pat = [op for op in cg.ops if op.kind == "compressed_conv2d"]
            assert all(op.fmt.library == sel.library for op in pat)
    dense = cm.evaluate(cm.dense_strategy())
    r = solve_exact(cm, Problem("loss", Budgets(flash=int(dense.flash_bytes - 0.4 * dense.const_bytes))))
    assert r.feasible and r.costs.flash_bytes <= dense.flash_bytes - 0.4 * dense.const_bytes
