"""Dense storage: an int8 OHWI (or (O, I)) tensor stored whole.

Structured pruning (whole filters / channels) needs no index: a structured-pruned layer
is simply a smaller dense layer, so encode the *shrunken* tensor (see :func:`shrink`).

``values`` int8 array of the layer's shape, C order (OHWI).

Bytes: weights = ``values.size``; index = 0; quant as every format (per stored output
channel, i.e. per kept filter); meta = the layer's C structs (:mod:`.footprint`; a 2-D
``(O, I)`` tensor is a per-tensor fully connected layer).

Example:
    >>> import numpy as np
    >>> w = np.arange(2 * 3 * 3 * 4, dtype=np.int8).reshape(2, 3, 3, 4)
    >>> d = encode(shrink(w, out_keep=[1]))
    >>> d.shape, byte_count(d).as_dict()
    ((1, 3, 3, 4), {'weights': 36, 'index': 0, 'quant': 12, 'meta': 96, 'total': 144})
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtmm.errors import FormatError
from dtmm.formats.common import ByteCount, check_shape, element_mask, quant_bytes, weight_int8
from dtmm.formats.footprint import POINTER_BYTES, fc_quant_bytes, meta_bytes

FORMAT = "dense"


@dataclass(frozen=True, eq=False)
class Dense:
    """One layer stored densely."""

    shape: tuple[int, ...]
    values: np.ndarray
    name: str = "layer"


def shrink(weight, out_keep=None, in_keep=None) -> np.ndarray:
    """Structured pruning as slicing: keep output channels ``out_keep`` (axis 0) and input
    channels ``in_keep`` (last axis); each is a bool mask or an index list, None = all.

    >>> shrink(np.ones((4, 1, 1, 3), np.int8), [True, False, True, False], [2]).shape
    (2, 1, 1, 1)
    """
    w = weight_int8(weight, fmt=FORMAT)
    if out_keep is not None:
        w = w[np.asarray(out_keep)]
    if in_keep is not None:
        w = w[..., np.asarray(in_keep)]
    if w.size == 0:
        raise FormatError(f"{FORMAT}: structured pruning removed every weight (shape {w.shape})")
    return np.ascontiguousarray(w)


def encode(weight, mask=None, *, name: str = "layer") -> Dense:
    """Store ``weight`` (times ``mask``, if given) densely; pruned weights become zeros."""
    w = weight_int8(weight, fmt=FORMAT)
    if mask is not None:
        w = np.where(element_mask(mask, w.shape, fmt=FORMAT), w, np.int8(0)).astype(np.int8)
    return Dense(shape=tuple(int(d) for d in w.shape), values=np.ascontiguousarray(w), name=name)


def verify(fmt: Dense, expected_shape) -> None:
    """Raise FormatError unless ``values`` is an int8 array of exactly the expected shape."""
    name = getattr(fmt, "name", "layer")
    if not isinstance(fmt, Dense):
        raise FormatError(f"{FORMAT} {name!r}: expected a Dense object, got {type(fmt).__name__}")
    shape = check_shape(fmt.shape, expected_shape, fmt=FORMAT, name=name)
    v = fmt.values
    if not isinstance(v, np.ndarray) or v.dtype != np.int8:
        raise FormatError(f"{FORMAT} {name!r}: values must be an int8 numpy array, got "
                          f"{getattr(v, 'dtype', type(v).__name__)}")
    if v.shape != shape:
        raise FormatError(f"{FORMAT} {name!r}: values has shape {v.shape}, expected {shape}")


def decode(fmt: Dense) -> np.ndarray:
    """Verify and return a copy of the stored tensor."""
    verify(fmt, fmt.shape)
    return fmt.values.copy()


def bytes_from_counts(shape, kept=None, *, name: str = "layer",
                      pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact bytes of a dense layer of ``shape`` (``kept`` is ignored: every weight is stored).

    >>> bytes_from_counts((3, 3, 3, 16)).total
    564
    """
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    return _bytes(shape, n, pointer_bytes)


def byte_count(fmt: Dense, pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact bytes of an encoded layer (does not verify)."""
    return _bytes(fmt.shape, int(fmt.values.nbytes), pointer_bytes)


def _bytes(shape, n: int, pointer_bytes: int) -> ByteCount:
    """A 4-D OHWI tensor is a dense conv2d, a 2-D (O, I) one a per-tensor fully connected."""
    if len(shape) == 2:
        return ByteCount(weights=n, index=0, quant=fc_quant_bytes(shape[0], per_channel=False),
                         meta=meta_bytes("fully_connected", pointer_bytes))
    return ByteCount(weights=n, index=0, quant=quant_bytes(shape[0]),
                     meta=meta_bytes("conv2d", pointer_bytes))
