"""Every zoo model: torch -> IR -> int8 -> .tflite; reference executor == TFLite Micro byte for byte
on real bundled images; dequantized int8 outputs track the float model."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from dtmm.data import load_dataset
from dtmm.graph.capture import capture
from dtmm.graph.float_exec import run_float
from dtmm.quant.quantize import dequantize, quantize_graph, quantize_input
from dtmm.runtime.reference import run_reference
from dtmm.tflite.export import to_tflite_bytes
from dtmm.tflite.reader import read_tflite
from dtmm.tflite.tflm import run_tflm
from dtmm.zoo import MODEL_NAMES, build_model

from _helpers import assert_bytes_equal, realistic_bn


@pytest.fixture(scope="module")
def mnist():
    ds = load_dataset("mnist5k", limit=200, seed=3)
    return ds.x.transpose(0, 2, 3, 1).copy()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_model_reference_equals_tflm_on_real_images(name, mnist):
    torch.manual_seed(0)
    net = realistic_bn(build_model(name, (1, 28, 28), 10), seed=1)
    g = capture(net, (1, 28, 28))
    qg = quantize_graph(g, [mnist[:64]])
    xq = quantize_input(mnist[64:184], qg.tensors[qg.inputs[0]].qparams)       # 120 real images
    ref = run_reference(qg, xq)
    model = to_tflite_bytes(qg)
    assert_bytes_equal(run_tflm(model, xq), ref)
    # the file read back runs identically in the reference executor
    assert_bytes_equal(run_reference(read_tflite(model), xq), ref)
    # int8 tracks float: dequantized outputs close to the float graph's
    want = run_float(g, mnist[64:184])
    got = dequantize(ref, qg.tensors[qg.outputs[0]].qparams)
    spread = float(want.max() - want.min())
    assert np.abs(got - want).mean() < 0.1 * spread


class OddShapes(nn.Module):
    """Odd shapes in one model: stride 2 'same' on odd sizes, 5x5 and 1x1, C_in = 3 and 17,
    depthwise, a residual add of differently scaled inputs, concat, avg pool, ReLU6, softmax."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(3, 17, 5, stride=2))
        self.dw = nn.Conv2d(17, 17, 3, padding=1, groups=17)
        self.pw = nn.Conv2d(17, 17, 1)
        self.scale = nn.Conv2d(17, 17, 1)
        with torch.no_grad():
            self.scale.weight.mul_(4.0)          # a residual branch with a different range
        self.branch = nn.Conv2d(17, 5, 3, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(22 * 3 * 3, 7)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = nn.functional.relu6(self.dw(x))
        x = torch.relu(self.pw(y) + self.scale(x))
        x = torch.cat([self.pool(x), self.branch(x)], 1)
        return torch.softmax(self.fc(torch.flatten(x, 1)), 1)


def test_odd_shapes_model_bit_exact_with_tflm():
    torch.manual_seed(0)
    net = OddShapes().eval()
    g = capture(net, (3, 15, 15))
    rng = np.random.default_rng(0)
    x = rng.random((150, 15, 15, 3), dtype=np.float32)
    qg = quantize_graph(g, [x[:50]])
    add = [o for o in qg.ops if o.kind == "add"][0]
    s1, s2 = (qg.tensors[i].qparams.s for i in add.inputs)
    assert s1 != s2                                    # the add really rescales
    xq = quantize_input(x[50:], qg.tensors[qg.inputs[0]].qparams)
    assert_bytes_equal(run_tflm(to_tflite_bytes(qg), xq), run_reference(qg, xq))
