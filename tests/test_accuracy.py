"""int8 accuracy stays within 1 percentage point of float (the foundations acceptance).

The small version (ResNet-8 on sklearn digits) runs in CI; the full mnist5k runs of
ResNet-8 and VGG-11 are marked slow (`make test-all`); `scripts/accuracy_int8.py`
reports the same numbers in BENCHMARKS.md."""
import pytest

from dtmm.pipeline.quantize import quantize_command
from dtmm.pipeline.train import train_command


def _float_vs_int8(tmp_path, model, data, epochs):
    train_command(model=model, data=data, epochs=epochs, out=str(tmp_path), progress=False)
    q = quantize_command(checkpoint=str(tmp_path / "checkpoint.pt"), data=data, out=str(tmp_path))
    return q["float_accuracy"], q["int8_accuracy"]


def test_resnet8_digits_int8_within_1pp(tmp_path):
    f, i = _float_vs_int8(tmp_path, "resnet8", "digits", epochs=4)
    assert f > 0.8, f"float model did not train ({f})"
    assert abs(f - i) <= 0.01, (f, i)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet8", "vgg11"])
def test_mnist5k_int8_within_1pp(tmp_path, model):
    f, i = _float_vs_int8(tmp_path, model, "mnist5k", epochs=4)
    assert f > 0.9, f"float model did not train ({f})"
    assert abs(f - i) <= 0.01, (f, i)
