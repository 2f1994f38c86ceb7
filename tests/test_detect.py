"""Detection: AP@0.5 (hand-computed and against a PyPI implementation), NMS, the YOLO head's
encode/decode/loss, the tiny YOLO (capture, int8, C), the detection task in the trainer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dtmm.data import Dataset, DetectionDataset, load_dataset, load_faces_det, split
from dtmm.detect import DetectionTask, YoloLayout, average_precision, decode, decode_nhwc, nms
from dtmm.detect.boxes import iou_matrix
from dtmm.detect.metrics import ap_from_pr
from dtmm.detect.yolo import LossWeights, encode_targets, yolo_loss
from dtmm.errors import DataError, DtmmError
from dtmm.train import TrainError, evaluate, train
from dtmm.zoo import DETECTION_MODEL_NAMES, ZooError, build_model, trained_like_batchnorm

from _helpers import assert_bytes_equal


# ----------------------------------------------------------------------------- AP@0.5

def test_ap_hand_computed():
    """Two images, three faces, six detections. Ranked: TP, FP, FP (duplicate of a matched
    face), TP, TP, FP -> precision 1, 1/2, 1/3, 1/2, 3/5, 1/2 at recall 1/3, 1/3, 1/3, 2/3, 1, 1.
    Envelope: 1 up to recall 1/3, then 3/5: AP = 1/3 * 1 + 1/3 * 3/5 + 1/3 * 3/5 = 11/15."""
    gt = [np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float), np.array([[0, 0, 20, 20]], float)]
    det = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10.5], [21, 0, 30, 10], [40, 40, 45, 45]], float),
            np.array([0.95, 0.85, 0.70, 0.60])),
           (np.array([[50, 50, 60, 60], [0, 0, 20, 18]], float), np.array([0.90, 0.80]))]
    r = average_precision(det, gt)
    assert r.tp.tolist() == [1, 0, 0, 1, 1, 0] and r.fp.tolist() == [0, 1, 1, 0, 0, 1]
    assert np.allclose(r.precision, [1, 1 / 2, 1 / 3, 1 / 2, 3 / 5, 1 / 2])
    assert np.allclose(r.recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    assert r.ap == pytest.approx(11 / 15, abs=1e-12)
    assert r.n_gt == 3 and r.n_detections == 6


def test_ap_threshold_is_strict_and_difficult_boxes_are_ignored():
    gt = [np.array([[0, 0, 10, 10]], float)]
    exactly_half = [(np.array([[0, 0, 10, 20]], float), np.array([0.9]))]          # IoU = 0.5
    assert iou_matrix(exactly_half[0][0], gt[0])[0, 0] == 0.5
    assert average_precision(exactly_half, gt).ap == 0.0
    assert average_precision([(np.array([[0, 0, 10, 19.9]]), np.array([0.9]))], gt).ap == 1.0
    gt2 = [np.array([[0, 0, 10, 10], [30, 30, 40, 40]], float)]
    det = [(np.array([[30, 30, 40, 40], [0, 0, 10, 10]], float), np.array([0.9, 0.8]))]
    r = average_precision(det, gt2, difficult=[np.array([False, True])])
    assert r.n_gt == 1 and r.tp.tolist() == [0, 1] and r.fp.tolist() == [0, 0] and r.ap == 1.0
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], gt).ap == 0.0      # nothing found
    with pytest.raises(DtmmError, match="undefined"):
        average_precision([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((0, 4))])
    assert ap_from_pr([1.0], [1.0]) == 1.0


def _random_case(rng, n_images=6):
    dets, gts = [], []
    for _ in range(n_images):
        ng, nd = int(rng.integers(0, 5)), int(rng.integers(0, 8))
        g = rng.uniform(0, 80, (ng, 2)).round()
        g = np.concatenate([g, g + rng.uniform(6, 30, (ng, 2)).round()], 1)
        d = rng.uniform(0, 80, (nd, 2)).round()
        d = np.concatenate([d, d + rng.uniform(6, 30, (nd, 2)).round()], 1)
        k = min(ng, nd)
        d[:k] = g[:k] + rng.integers(-4, 5, (k, 4))          # near misses and hits
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        dets.append((d, rng.permutation(nd) / 10 + rng.random() + 0.01))   # distinct scores
        gts.append(g)
    return dets, gts


@pytest.mark.parametrize("seed", range(8))
def test_ap_matches_mean_average_precision_package(seed):
    """The same VOC all-points AP as the `mean-average-precision` package (PyPI), whose boxes
    use the VOC devkit's +1 pixel convention: compared with inclusive=True."""
    import mean_average_precision as mapkg          # pinned in requirements.lock (test extra)
    rng = np.random.default_rng(seed)
    dets, gts = _random_case(rng)
    if sum(len(g) for g in gts) == 0:
        gts[0] = np.array([[1.0, 1.0, 20.0, 20.0]])
    scores = np.concatenate([s for _, s in dets])
    assert len(np.unique(scores)) == len(scores)
    m = mapkg.MetricBuilder.build_evaluation_metric("map_2d", async_mode=False, num_classes=1)
    for (d, s), g in zip(dets, gts):
        m.add(np.concatenate([d, np.zeros((len(d), 1)), s[:, None]], 1),
              np.concatenate([g, np.zeros((len(g), 3))], 1))
    want = float(m.value(iou_thresholds=0.5)["mAP"])
    got = average_precision(dets, gts, inclusive=True).ap
    assert got == pytest.approx(want, abs=1e-6)            # the package returns float32


# ----------------------------------------------------------------------------- NMS

def test_nms_greedy_known_answer():
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 4], [20, 20, 30, 30], [21, 21, 31, 31]],
                 float)
    s = np.array([0.5, 0.9, 0.8, 0.7, 0.7])
    # 1 first; 0 overlaps it (IoU 0.82) -> gone; 2 overlaps 1 at 0.36 -> kept; 3 then 4 (tie: index)
    assert nms(b, s, 0.5).tolist() == [1, 2, 3]
    assert nms(b, s, 0.5, max_detections=2).tolist() == [1, 2]
    assert nms(b, s, 1.0).tolist() == [1, 2, 3, 4, 0]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(DtmmError, match="scores"):
        nms(b, s[:2])


# ----------------------------------------------------------------------------- YOLO head

def _outputs_from_targets(t: torch.Tensor) -> torch.Tensor:
    """Head outputs that decode exactly to the encoded targets (a perfect prediction)."""
    n, a, sh, sw, _ = t.shape
    p = torch.zeros(n, a, sh, sw, 5)
    pos = t[..., 0] == 1
    p[..., 0] = torch.where(pos, 12.0, -12.0)
    p[..., 1:3] = torch.logit(t[..., 1:3].clamp(1e-6, 1 - 1e-6))
    p[..., 3:5] = t[..., 3:5]
    return p.permute(0, 1, 4, 2, 3).reshape(n, a * 5, sh, sw)


def test_encode_decode_round_trip_and_loss():
    lay = YoloLayout()
    rng = np.random.default_rng(2)
    boxes = []
    for _ in range(5):
        k = int(rng.integers(0, 4))
        xy = rng.uniform(0, 60, (k, 2))
        boxes.append(np.concatenate([xy, xy + rng.uniform(14, 50, (k, 1))], 1))
    t, dropped = encode_targets(boxes, lay, (112, 112), (7, 7), return_dropped=True)
    assert tuple(t.shape) == (5, 2, 7, 7, 5)
    assert int((t[..., 0] == 1).sum()) + dropped == sum(len(b) for b in boxes)
    out = _outputs_from_targets(t)
    dets = decode(out, lay, (112, 112), score_threshold=0.5)
    kept = [b for b, _ in dets]
    for got, want in zip(kept, boxes):
        if dropped == 0:
            assert len(got) == len(want)
        for w in want:                                         # every box found, to 1e-3 px
            assert len(got) and np.abs(got - w).max(axis=1).min() < 1e-3 or dropped
    if dropped == 0:
        assert average_precision(dets, boxes).ap == 1.0
    # the loss of a perfect prediction is tiny; of a zero output, large
    assert float(yolo_loss(out, t, lay)) < 1e-3
    assert float(yolo_loss(torch.zeros_like(out), t, lay)) > 1.0
    nhwc = out.permute(0, 2, 3, 1).numpy()
    assert all(np.array_equal(a[0], b[0]) for a, b in
               zip(decode_nhwc(nhwc, lay, (112, 112)), decode(out, lay, (112, 112))))


def test_encoder_assignment_rules():
    lay = YoloLayout(anchors=((0.2, 0.2), (0.5, 0.5)))
    # two boxes centred in the same cell: the larger takes its best anchor, the smaller the other
    big, small = [40, 40, 100, 100], [62, 62, 78, 78]
    t = encode_targets([np.array([small, big], float)], lay, (112, 112), (7, 7))
    cell = t[0, :, 4, 4]
    assert cell[:, 0].tolist() == [1.0, 1.0]
    assert cell[1, 3].item() == pytest.approx(np.log((60 / 112) / 0.5))     # big -> anchor 1
    assert cell[0, 3].item() == pytest.approx(np.log((16 / 112) / 0.2))     # small -> anchor 0
    # a third box in that cell finds no free anchor and is dropped
    t, dropped = encode_targets([np.array([small, big, [60, 60, 80, 80]], float)], lay,
                                (112, 112), (7, 7), return_dropped=True)
    assert dropped == 1
    # ignore: a box matching both anchors' shapes well marks the non-responsible one -1
    lay2 = YoloLayout(anchors=((0.3, 0.3), (0.32, 0.32)))
    t = encode_targets([np.array([[0, 0, 34, 34]], float)], lay2, (112, 112), (7, 7))
    assert sorted(t[0, :, 1, 1, 0].tolist()) == [-1.0, 1.0]          # centre (17, 17): cell (1, 1)
    with pytest.raises(DtmmError, match="target shape"):
        yolo_loss(torch.zeros(1, 10, 7, 7), torch.zeros(1, 2, 6, 6, 5), YoloLayout())


def test_yolo_loss_trains_on_a_batch():
    torch.manual_seed(0)
    ds = load_faces_det(8, size=48)
    net = build_model("yolo", ds.input_shape, 1, seed=0)
    task = DetectionTask(hflip=False)
    xb, bb = next(task.batches(ds, 8, shuffle=False, seed=0))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    first = None
    for _ in range(30):
        loss = task.loss(net(xb), bb)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(task.loss(net(xb), bb).detach()) < 0.3 * first


# ----------------------------------------------------------------------------- model

def test_tiny_yolo_shape_layout_and_errors():
    assert DETECTION_MODEL_NAMES == ("yolo",)
    net = build_model("yolo", (3, 112, 112), 1, seed=0).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 256, 256, 10]
    assert convs[-1].kernel_size == (1, 1) and convs[-1].bias is not None
    assert net.grid == (7, 7)
    assert tuple(net(torch.zeros(1, 3, 112, 112)).shape) == (1, 10, 7, 7)
    with pytest.raises(ZooError, match="one-class"):
        build_model("yolo", (3, 112, 112), 2)
    with pytest.raises(ZooError, match="multiples of 16"):
        build_model("yolo", (3, 100, 112), 1)


def test_tiny_yolo_captures_quantizes_and_runs_as_c():
    from dtmm.codegen.backends import build_host_model
    from dtmm.codegen.plan import plan_model
    from dtmm.graph.capture import capture
    from dtmm.graph.float_exec import run_float
    from dtmm.quant.quantize import dequantize, quantize_graph, quantize_input
    from dtmm.runtime.reference import run_reference

    ds = load_faces_det(12, size=48)
    net = trained_like_batchnorm(build_model("yolo", ds.input_shape, 1, seed=0), seed=2)
    g = capture(net, ds.input_shape)
    assert [o.kind for o in g.ops].count("conv2d") == 8 and g.tensors[g.outputs[0]].shape == (3, 3, 10)
    x = np.ascontiguousarray(ds.x.transpose(0, 2, 3, 1))
    with torch.no_grad():
        want = net(torch.from_numpy(ds.x)).permute(0, 2, 3, 1).numpy()
    assert np.allclose(run_float(g, x), want, atol=1e-4)
    qg = quantize_graph(g, [x[:8]])
    xq = quantize_input(x[8:], qg.tensors[qg.inputs[0]].qparams)
    ref = run_reference(qg, xq)
    assert_bytes_equal(build_host_model(qg)(xq), ref, "tiny YOLO host C")
    out = dequantize(ref, qg.tensors[qg.outputs[0]].qparams)
    spread = float(want.max() - want.min())
    assert np.abs(out - want[8:]).mean() < 0.05 * spread
    big = quantize_graph(capture(build_model("yolo", (3, 112, 112), 1, seed=0).eval(), (3, 112, 112)),
                         [np.random.default_rng(0).random((2, 112, 112, 3), dtype=np.float32)])
    plan = plan_model(big, "cortex-m55")                        # the paper's size: one in, one out
    assert plan.output.shape == (7, 7, 10) and plan.const_bytes > 1_576_000


# ----------------------------------------------------------------------------- data

def test_faces_det_is_deterministic_composited_and_split_by_fold():
    ds = load_faces_det(60)
    assert ds.input_shape == (1, 112, 112) and "composited" in ds.source
    assert np.array_equal(ds.x, load_faces_det(60).x)
    assert not np.array_equal(ds.x, load_faces_det(60, seed=1).x)
    assert np.array_equal(load_faces_det(30).x, ds.x[:30])              # image i independent of n
    assert ds.groups.tolist() == [i % 10 for i in range(60)]
    sizes = np.concatenate([b[:, 2] - b[:, 0] for b in ds.boxes])
    assert sizes.min() >= 15 and sizes.max() <= 57 and 60 < ds.n_boxes < 150
    for b in ds.boxes:                                               # pasted squares do not overlap
        iou = iou_matrix(b, b)
        assert np.allclose(iou, np.eye(len(b)))
    tr, va, te = split(ds, val=0.0, test=0.3, seed=0)
    assert len(va) == 0 and len(te) == 18 and len(tr) == 42
    assert not set(tr.groups) & set(te.groups)


def test_faces_det_registered(monkeypatch):
    import functools

    import dtmm.data as D

    assert D._BUILTIN["faces-det"] is load_faces_det and D._WITH_PATH["fddb"] is D.load_fddb
    assert set(D.DETECTION_DATASET_NAMES) <= set(D.DATASET_NAMES)
    # the registered loader builds 1,500 images; a smaller one keeps this test fast
    monkeypatch.setitem(D._BUILTIN, "faces-det", functools.partial(load_faces_det, 60))
    ds = load_dataset("faces-det", limit=40, seed=3)
    assert isinstance(ds, DetectionDataset) and len(ds) == 40 and ds.name == "faces-det"
    assert np.array_equal(ds.x, load_dataset("faces-det", limit=40, seed=3).x)
    with pytest.raises(DataError, match="takes no path"):
        load_dataset("faces-det:/tmp")


def test_detection_dataset_validates_boxes():
    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(DataError, match="image 1 box"):
        DetectionDataset(x, [np.zeros((0, 4)), np.array([[2, 2, 9, 4]])], ("face",), "t")
    with pytest.raises(DataError, match="2 images but boxes for 1"):
        DetectionDataset(x, [np.zeros((0, 4))], ("face",), "t")


# ----------------------------------------------------------------------------- trainer

def test_trainer_detection_task_and_clear_errors():
    det = load_faces_det(24, size=32)
    tr, _, te = split(det, val=0.0, test=0.25, seed=0)
    net = build_model("yolo", det.input_shape, 1, seed=0)
    res = train(net, tr, te, epochs=2, lr=1e-3, optimizer="adam", task=DetectionTask(),
                progress=False, batch_size=8)
    assert res.steps == 2 * 3 and len(res.history) == 2
    assert 0.0 <= res.val_acc <= 1.0 and res.final.val_loss > 0
    ap, loss = evaluate(net, te, task=DetectionTask())
    assert (ap, loss) == pytest.approx((res.val_acc, res.final.val_loss))
    with pytest.raises(DataError, match="DetectionTask"):
        train(net, tr, epochs=1, lr=1e-3, progress=False)           # classification on boxes
    cls = Dataset(np.zeros((4, 1, 32, 32), np.float32), np.array([0, 1, 0, 1]), ("a", "b"), "toy")
    with pytest.raises(DataError, match="needs boxes"):
        train(net, cls, epochs=1, lr=1e-3, progress=False, task=DetectionTask())
    with pytest.raises(TrainError, match="augment"):
        train(net, tr, epochs=1, lr=1e-3, progress=False, task=DetectionTask(),
              augment=lambda x, g: x)


def test_loss_weights_are_used():
    lay = YoloLayout()
    t = encode_targets([np.array([[10, 10, 40, 40]], float)], lay, (112, 112), (7, 7))
    out = torch.zeros(1, 10, 7, 7)
    a = float(yolo_loss(out, t, lay, LossWeights(noobj=0.0, coord=0.0)))
    assert a == pytest.approx(np.log(2.0), rel=1e-6)                 # one positive, BCE(0, 1)


@pytest.mark.slow
def test_full_size_tiny_yolo_on_cortex_m55_equals_reference():
    """The paper-size model (112x112, 7x7 grid; 1.58 MB of constants in the M55's large
    region) as firmware under QEMU: output bytes equal to the NumPy reference."""
    from dtmm.codegen.backends import build_firmware, run_firmware
    from dtmm.codegen.platform import toolchain_available
    from dtmm.graph.capture import capture
    from dtmm.quant.quantize import quantize_graph, quantize_input
    from dtmm.runtime.reference import run_reference

    if toolchain_available("cortex-m55") is not None:
        pytest.skip(str(toolchain_available("cortex-m55")))
    ds = load_faces_det(20)
    net = trained_like_batchnorm(build_model("yolo", ds.input_shape, 1, seed=0), seed=1)
    x = np.ascontiguousarray(ds.x.transpose(0, 2, 3, 1))
    qg = quantize_graph(capture(net, ds.input_shape), [x[:16]])
    xq = quantize_input(x[16:18], qg.tensors[qg.inputs[0]].qparams)
    res = run_firmware(build_firmware(qg, "cortex-m55"), xq)
    assert_bytes_equal(res.outputs, run_reference(qg, xq), "tiny YOLO 112x112 on Cortex-M55")
    assert res.const_bytes > 1_576_000 and len(res.instructions) == 2
