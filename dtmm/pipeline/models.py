"""Which model: a zoo name or a user's own ``path/to/file.py:factory``, and its checkpoint.

A *model spec* is either a name from :mod:`dtmm.zoo` (``resnet8``) or
``path/to/file.py:factory``: the file is imported (it is the user's own code, run as
such) and ``factory`` called to build the ``nn.Module``; it is called with keyword
arguments ``input_shape=(C, H, W)`` and ``num_classes=N`` when it accepts them, else
with none. A factory that does not return an ``nn.Module`` is refused.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "mynet.py"
    >>> _ = p.write_text("import torch.nn as nn\\n"
    ...                  "def make(input_shape, num_classes):\\n"
    ...                  "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[1] * input_shape[2], num_classes))\\n")
    >>> net = build(f"{p}:make", (1, 8, 8), 10)
    >>> type(net).__name__, is_file_spec(f"{p}:make"), is_file_spec("resnet8")
    ('Sequential', True, False)
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from dtmm.errors import DtmmError

__all__ = ["ModelSpecError", "is_file_spec", "check_spec", "canonical", "build", "load",
           "load_with_data"]


class ModelSpecError(DtmmError):
    """A model spec that names no zoo model or a factory that cannot build one."""


def is_file_spec(spec: str) -> bool:
    """True for ``path.py:factory`` specs."""
    head, sep, tail = str(spec).rpartition(":")
    return bool(sep) and head.endswith(".py") and tail.isidentifier()


def canonical(spec: str) -> str:
    """``spec`` as a checkpoint records it: a file spec with the file's absolute path (so the
    checkpoint loads from any working directory), a zoo name unchanged."""
    if not is_file_spec(spec):
        return spec
    head, _, name = str(spec).rpartition(":")
    return f"{Path(head).expanduser().resolve()}:{name}"


def check_spec(spec: str) -> None:
    """Refuse, naming what was expected, a spec that is neither a zoo name nor a file spec."""
    from dtmm.zoo import DETECTION_MODEL_NAMES, MODEL_NAMES

    s = str(spec)
    if is_file_spec(s) or s in MODEL_NAMES or s in DETECTION_MODEL_NAMES:
        return
    if s.lower().endswith(".onnx"):
        raise ModelSpecError(
            f"--model {s}: ONNX models are not accepted (the onnx2torch importer needs a torchvision "
            f"build matching dtmm's torch); write a factory that builds the model in PyTorch, or "
            f"converts it with onnx2torch in your own environment, and pass path/to/file.py:factory")
    head, sep, tail = s.rpartition(":")
    if s.endswith(".py") or (sep and head.endswith(".py")):
        what = f"{tail!r} is not a Python name" if sep and head.endswith(".py") else "no factory given"
        raise ModelSpecError(f"--model {s}: {what}; expected path/to/file.py:factory, a function "
                             f"in that file that returns a torch.nn.Module")
    raise ModelSpecError(f"unknown model {s!r}; expected a zoo model ({', '.join(MODEL_NAMES)}; "
                         f"detection: {', '.join(DETECTION_MODEL_NAMES)}) or your own as "
                         f"path/to/file.py:factory")


def _factory(spec: str):
    head, _, name = str(spec).rpartition(":")
    path = Path(head).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"--model {spec}: {path} is not a file (expected path/to/file.py:factory)")
    mod_name = f"dtmm_user_model_{abs(hash(str(path.resolve())))}"
    try:
        s = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(s)
        sys.modules[mod_name] = mod
        s.loader.exec_module(mod)
    except Exception as e:  # the user's code: any error is reported with its cause
        raise ModelSpecError(f"--model {spec}: importing {path} failed: {type(e).__name__}: {e}") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ModelSpecError(f"--model {spec}: {path} defines no callable {name!r}")
    return fn


def build(spec: str, input_shape, num_classes: int):
    """The ``nn.Module`` of a model spec (see the module docstring)."""
    import torch.nn as nn

    check_spec(spec)
    if not is_file_spec(spec):
        from dtmm.zoo import build_model

        return build_model(spec, tuple(input_shape), int(num_classes))
    fn = _factory(spec)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kw = {}
    if "input_shape" in params:
        kw["input_shape"] = tuple(input_shape)
    if "num_classes" in params:
        kw["num_classes"] = int(num_classes)
    try:
        net = fn(**kw)
    except Exception as e:
        raise ModelSpecError(f"--model {spec}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise ModelSpecError(f"--model {spec}: the factory returned a {type(net).__name__}, not a "
                             f"torch.nn.Module")
    return net


def load(checkpoint, spec: str | None = None):
    """``(model, meta)`` of a checkpoint; a user's model is rebuilt from ``spec`` first
    (the checkpoint records the spec it was trained with, used when ``spec`` is None)."""
    from dtmm.train import load_checkpoint

    if spec is not None:
        check_spec(spec)
    if spec is not None and not is_file_spec(spec):
        return load_checkpoint(checkpoint, expected_model=spec)
    meta = _header(checkpoint)
    if spec is None:
        if not is_file_spec(meta.model_name):
            return load_checkpoint(checkpoint)
        spec = _recorded(checkpoint, meta.model_name)
    net = build(spec, meta.input_shape, meta.num_classes)
    return load_checkpoint(checkpoint, model=net)


def load_with_data(checkpoint, spec: str | None, data: str):
    """``(model, meta, dataset, train, val, test)``: :func:`load`, and the data set's splits,
    refused (naming both shapes) when they do not match the checkpoint's input and classes."""
    from dtmm.pipeline.data import check_dataset_matches, load_splits

    net, meta = load(checkpoint, spec)
    ds, tr, va, te = load_splits(data, meta.input_shape)
    check_dataset_matches(ds, meta, data)
    return net, meta, ds, tr, va, te


def _recorded(checkpoint, spec: str) -> str:
    """The file spec a checkpoint records, found: as recorded (absolute, or relative to the
    working directory), else the same file name next to the checkpoint."""
    head, _, name = spec.rpartition(":")
    path = Path(head).expanduser()
    if path.is_file():
        return spec
    beside = Path(checkpoint).expanduser().parent / path.name
    if beside.is_file():
        return f"{beside}:{name}"
    raise ModelSpecError(f"{checkpoint}: a checkpoint of your own model {spec}, whose file is not "
                         f"found (nor {beside}); pass --model path/to/file.py:{name} (Python: "
                         f"spec=) to rebuild it")


def _header(checkpoint):
    """The checkpoint's metadata, without building its model."""
    import os

    import torch

    from dtmm.errors import ModelFileError
    from dtmm.train.checkpoint import _EXPECTED, _load_failure, _read_meta

    p = Path(os.path.expanduser(os.fspath(checkpoint)))
    if not p.exists():
        raise ModelFileError(f"checkpoint not found: {p}")
    if not p.is_file():
        raise ModelFileError(f"{p}: is a folder, not a file; {_EXPECTED}")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/corrupt files
        raise ModelFileError(_load_failure(p, e)) from None
    return _read_meta(p, raw)
