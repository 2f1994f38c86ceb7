"""Run a ``.tflite`` model with TensorFlow Lite Micro's interpreter (reference kernels).

Used to check that dtmm's integer reference and kernels match TFLM byte for byte.

Example:
    >>> import numpy as np
    >>> from dtmm.graph.ir import Graph, TensorSpec, QParams, MaxPool2D
    >>> from dtmm.tflite.export import to_tflite_bytes
    >>> g = Graph(); q = QParams.per_tensor(0.1, 0)
    >>> _ = g.add_tensor(TensorSpec("x", (4, 4, 1), "int8", q))
    >>> _ = g.add_tensor(TensorSpec("y", (2, 2, 1), "int8", q))
    >>> _ = g.add_op(MaxPool2D("pool", ["x"], "y"))
    >>> g.inputs, g.outputs = ["x"], ["y"]
    >>> x = np.arange(32, dtype=np.int8).reshape(2, 4, 4, 1)
    >>> run_tflm(to_tflite_bytes(g), x)[1, :, :, 0].tolist()
    [[21, 23], [29, 31]]
"""
from __future__ import annotations

import numpy as np

from dtmm.errors import InvalidArgument, ModelFileError

__all__ = ["run_tflm", "DEFAULT_ARENA_BYTES"]

DEFAULT_ARENA_BYTES = 8 << 20


def run_tflm(model_bytes: bytes, x, *, arena_size: int | None = None) -> np.ndarray:
    """Run every sample of the int8 batch ``x`` (N, ...) through TFLM; return (N, ...) outputs.

    One interpreter is created and reused for the whole batch (the model's inputs have
    batch 1). The model is first parsed by :func:`dtmm.tflite.reader.load_model`, so a
    malformed file raises :class:`ModelFileError` instead of reaching TFLM's C++.

    Args:
        model_bytes: the ``.tflite`` flatbuffer.
        x: int8 array with the model input's shape minus its batch dimension after N.
        arena_size: TFLM tensor arena in bytes (default ``max(8 MiB, 4 * len(model))``).

    Returns:
        int8 array ``(N, *output_shape_without_batch)`` of the first output.
    """
    from tflite_micro import runtime  # imported lazily: the C++ extension is heavy

    from dtmm.tflite.reader import load_model

    model_bytes = bytes(model_bytes)
    load_model(model_bytes)            # validates structure; raises ModelFileError
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise InvalidArgument(f"run_tflm: input must be int8, got {x.dtype}")
    if arena_size is None:
        arena_size = max(DEFAULT_ARENA_BYTES, 4 * len(model_bytes))
    try:
        interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    except (RuntimeError, ValueError) as e:
        raise ModelFileError(f"TFLite Micro refused the model: {e}") from e
    in_shape = tuple(interp.get_input_details(0)["shape"])
    if tuple(x.shape[1:]) != in_shape[1:]:
        raise InvalidArgument(f"run_tflm: batch shape {x.shape} does not match model input {in_shape}")
    outs = []
    for i in range(x.shape[0]):
        interp.set_input(np.ascontiguousarray(x[i:i + 1]), 0)
        interp.invoke()
        y = np.array(interp.get_output(0), copy=True)
        outs.append(y.reshape(y.shape[1:]) if y.ndim > 1 and y.shape[0] == 1 else y)
    return np.stack(outs)
