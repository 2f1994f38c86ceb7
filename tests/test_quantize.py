"""int8 quantization: calibration, parameter sharing, weights/bias, and QAT fake-quant."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from dtmm.errors import QuantizationError
from dtmm.graph.capture import capture
from dtmm.graph.ir import QParams
from dtmm.quant import arith
from dtmm.quant.calibrate import Observer, choose_qparams
from dtmm.quant.fake import FakeQuantize, WeightFakeQuant, fold_batchnorm, prepare_qat, strip_qat
from dtmm.quant.quantize import (SOFTMAX_QPARAMS, quantize_bias, quantize_graph, quantize_input,
                                 quantize_weights, symmetric_weight_scales)


def test_choose_qparams_makes_zero_exact_and_covers_range():
    qp = choose_qparams(-1.0, 3.0)
    assert qp.scale.dtype == np.float32 and qp.zero_point.dtype == np.int32
    # real 0 maps exactly to the zero point, the range ends map inside [-128, 127]
    assert -128 <= qp.zp <= 127
    lo_q = round(-1.0 / qp.s) + qp.zp
    hi_q = round(3.0 / qp.s) + qp.zp
    assert lo_q >= -128 and hi_q <= 127 and hi_q - lo_q >= 254
    # a range that excludes 0 is widened to include it
    assert choose_qparams(2.0, 5.0).zp == -128
    assert choose_qparams(-5.0, -2.0).zp == 127


def test_observer_methods():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(size=20000), [50.0]])       # one outlier
    ranges = {}
    for m in ("minmax", "percentile", "mse"):
        o = Observer(m, percentile=99.9)
        o.update({"t": v})
        ranges[m] = o.ranges()["t"]
    assert ranges["minmax"][1] == 50.0
    assert ranges["percentile"][1] < 10.0
    assert ranges["mse"][1] < 50.0
    with pytest.raises(QuantizationError):
        Observer("bogus")
    with pytest.raises(QuantizationError, match="no data"):
        Observer().ranges()


def test_symmetric_per_channel_weights():
    w = np.array([[1.0, -2.0], [0.0, 0.0], [0.5, 0.25]], np.float32)
    s = symmetric_weight_scales(w, axis=0)
    np.testing.assert_array_equal(s, np.float32([2 / 127, 1 / 127, 0.5 / 127]))
    q = quantize_weights(w, s, axis=0)
    np.testing.assert_array_equal(q, [[64, -127], [0, 0], [127, 64]])   # 63.5 rounds away from 0
    assert q.dtype == np.int8


def test_bias_is_int32_at_input_times_weight_scale_and_overflow_is_refused():
    b = quantize_bias(np.array([1.0, -1.0]), 0.5, np.float32([0.01, 0.02]))
    np.testing.assert_array_equal(b, [200, -100])
    with pytest.raises(QuantizationError, match="int32"):
        quantize_bias(np.array([1e6]), 1e-4, np.float32([1e-6]))


def test_quantize_input_rounds_half_away_and_saturates():
    qp = QParams.per_tensor(0.5, 0)
    np.testing.assert_array_equal(quantize_input(np.array([0.25, -0.25, 100.0, -100.0]), qp),
                                  [1, -1, 127, -128])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), self.b(x)], 1)
        y = self.pool(y)
        return torch.softmax(self.fc(y.flatten(1)), 1)


def _qgraph(calib=None):
    torch.manual_seed(0)
    g = capture(Net().eval(), (3, 6, 6))
    rng = np.random.default_rng(0)
    calib = calib if calib is not None else [rng.random((16, 6, 6, 3), dtype=np.float32)]
    return g, quantize_graph(g, calib)


def test_quantized_graph_constraints():
    g, q = _qgraph()
    t = q.tensors
    cat = [o for o in q.ops if o.kind == "concat"][0]
    assert all(t[i].qparams.same_as(t[cat.output].qparams) for i in cat.inputs)
    pool = [o for o in q.ops if o.kind == "max_pool2d"][0]
    assert t[pool.inputs[0]].qparams.same_as(t[pool.output].qparams)
    assert t[q.outputs[0]].qparams.same_as(SOFTMAX_QPARAMS)
    for op in q.weighted_ops():
        assert op.weight.dtype == np.int8 and op.weight.min() >= -127
        assert op.bias.dtype == np.int32
        assert op.quant.multiplier.dtype == np.int32
    conv = q.ops[0]
    in_s, out_s = t[conv.inputs[0]].qparams.s, t[conv.output].qparams.s
    m, s = arith.conv_multipliers(in_s, conv.quant.w_scale, out_s)
    np.testing.assert_array_equal(conv.quant.multiplier, m)
    np.testing.assert_array_equal(conv.quant.shift, s)
    assert conv.quant.w_scale.shape == (4,)           # per output channel
    fc = [o for o in q.ops if o.kind == "fully_connected"][0]
    assert fc.quant.w_scale.shape == (1,)             # per tensor
    # the float graph is untouched
    assert g.ops[0].weight.dtype == np.float32


def test_empty_calibration_is_refused():
    with pytest.raises(QuantizationError, match="empty"):
        _qgraph(calib=[np.zeros((0, 6, 6, 3), np.float32)])


def test_fake_quant_matches_int8_rounding_and_passes_gradients():
    fq = FakeQuantize()
    x = torch.linspace(-1, 3, 101, requires_grad=True)
    fq.train()
    y = fq(x)
    scale, zp = fq.qparams()
    qp = choose_qparams(-1.0, 3.0)                  # the export's parameters for this range ...
    assert scale.item() == qp.s and zp.item() == qp.zp
    q = quantize_input(x.detach().numpy(), qp)      # ... and the export's input quantization
    np.testing.assert_array_equal(torch.round(y.detach().double() / scale + zp).numpy(), q)
    assert torch.allclose(y, ((torch.from_numpy(q).double() - zp) * scale).float(), atol=1e-6)
    y.sum().backward()
    assert torch.all(x.grad == 1)                     # straight-through estimator
    w = torch.randn(4, 3, 3, 3)
    wq = WeightFakeQuant(0)(w).numpy()
    s = symmetric_weight_scales(w.numpy().transpose(0, 2, 3, 1), 0)
    np.testing.assert_allclose(wq.transpose(0, 2, 3, 1),
                               quantize_weights(w.numpy().transpose(0, 2, 3, 1), s, 0)
                               * s[:, None, None, None], rtol=1e-6, atol=1e-7)


def test_fold_batchnorm_and_qat_round_trip():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    m[1].running_mean.uniform_(-0.5, 0.5)
    m[1].running_var.uniform_(0.5, 2.0)
    m.eval()
    x = torch.rand(4, 2, 5, 5)
    folded = fold_batchnorm(m)
    assert not any(isinstance(s, nn.BatchNorm2d) for s in folded.modules())
    assert torch.allclose(folded(x), m(x), atol=1e-5)
    qat = prepare_qat(m)
    qat.train()
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    loss = qat(x).pow(2).sum()
    loss.backward()
    opt.step()
    qat.eval()
    plain = strip_qat(qat)
    assert not any(isinstance(s, FakeQuantize) for s in plain.modules())
    g = capture(plain, (2, 5, 5))          # the fine-tuned model can be captured again
    assert [o.kind for o in g.ops] == ["conv2d", "reshape", "fully_connected"]
    # with fake-quant the outputs stay close to float
    assert torch.allclose(qat(x), plain(x), atol=0.1)


def test_strip_qat_keeps_pruning_masks():
    from dtmm.prune import apply_masks
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    mask = torch.ones(4, 2, 3, 3, dtype=torch.bool)
    mask[1] = False
    mask[2, :, 0, 0] = False
    apply_masks(m, {"0": mask})
    qat = prepare_qat(m)
    plain = strip_qat(qat)
    w = dict(plain.named_modules())["0"].weight
    assert torch.all(w[~mask] == 0) and torch.all(w[mask] != 0)
