"""TFLite Micro "prune" layout (DECODE operator, decode type 2 = PRUNING), as a reference.

What was confirmed: TFLM's ``kernels/decode_state_prune.cc`` (tflite-micro, 2025) decodes
an *encoded* uint8 tensor holding one bit per output element and an *ancillary* tensor
made of the 16-byte DECODE Common Metadata header (byte 0 = decode type 2, byte 1 =
version 1, bytes 2..15 zero here) followed by the value table: the kept values, in
element order. Element ``k`` (flat, C order, i.e. OHWI for conv weights) is kept when
bit ``7 - (k % 8)`` of byte ``k // 8`` is set (MSB first); a cleared bit decodes to the
zero point (0 for int8 weights, which TFLite quantizes symmetrically). For per-channel
int8 weights quantized along axis 0 the decoder walks the same flat order. The pip
package's Python *encoder* for this type is still a stub (``pruning.py`` raises "not
yet implemented"), so this module's encoder is ours, written to that decoder.

Note: TFLM decodes into an SRAM scratch tensor of the full dense size before the
operator runs; that SRAM cost is not part of these flash bytes.

Arrays: ``dcm`` uint8[16]; ``bitmask`` uint8[ceil(N / 8)] (padding bits of the last
byte are 0); ``values`` int8[popcount(bitmask)]. A kept weight equal to 0 still sets
its bit and is stored, like in every other format here (storage follows the mask).

Bytes: weights = ``len(values)``; index = ``len(bitmask)``; quant as every format;
meta = header (10) + DCM (16).

Example:
    >>> import numpy as np
    >>> t = encode(np.array([[0, 3, 0, 0, 0, 0, 0, 0, 0, 4]], np.int8))
    >>> t.bitmask.tolist(), t.values.tolist(), t.dcm[:2].tolist()
    ([64, 64], [3, 4], [2, 1])
    >>> byte_count(t).as_dict()
    {'weights': 2, 'index': 2, 'quant': 12, 'meta': 26, 'total': 42}
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtmm.errors import FormatError
from dtmm.formats.common import (HEADER_BYTES, ByteCount, check_array, check_shape,
                                 element_mask, quant_bytes, weight_int8)

FORMAT = "tflm_prune"
DECODE_TYPE_PRUNING = 2
DCM_VERSION = 1
DCM_BYTES = 16
META_BYTES = HEADER_BYTES + DCM_BYTES


@dataclass(frozen=True, eq=False)
class TFLMPrune:
    """One layer in TFLM's pruning layout. See the module docstring."""

    shape: tuple[int, ...]
    dcm: np.ndarray
    bitmask: np.ndarray
    values: np.ndarray
    name: str = "layer"


def _dcm() -> np.ndarray:
    d = np.zeros(DCM_BYTES, dtype=np.uint8)
    d[0], d[1] = DECODE_TYPE_PRUNING, DCM_VERSION
    return d


def encode(weight, mask=None, *, name: str = "layer") -> TFLMPrune:
    """Encode an int8 weight keeping ``mask``'s elements (None: keep non-zeros)."""
    w = weight_int8(weight, fmt=FORMAT)
    m = (w != 0) if mask is None else element_mask(mask, w.shape, fmt=FORMAT)
    bits = np.packbits(m.reshape(-1), bitorder="big")
    return TFLMPrune(shape=tuple(int(d) for d in w.shape), dcm=_dcm(), bitmask=bits,
                     values=np.ascontiguousarray(w[m], dtype=np.int8), name=name)


def verify(fmt: TFLMPrune, expected_shape) -> None:
    """Raise FormatError unless header, bitmask and value table are consistent.

    Checks: shape; dtypes; DCM type 2 / version 1; ``len(bitmask) == ceil(N/8)``; the
    padding bits of the last byte are 0; ``len(values) == popcount(bitmask)``.
    """
    name = getattr(fmt, "name", "layer")
    if not isinstance(fmt, TFLMPrune):
        raise FormatError(f"{FORMAT} {name!r}: expected a TFLMPrune object, "
                          f"got {type(fmt).__name__}")
    shape = check_shape(fmt.shape, expected_shape, fmt=FORMAT, name=name)
    n = math.prod(shape)
    dcm = check_array(fmt.dcm, "dcm", fmt=FORMAT, name=name, dtypes=[np.uint8])
    bits = check_array(fmt.bitmask, "bitmask", fmt=FORMAT, name=name, dtypes=[np.uint8])
    values = check_array(fmt.values, "values", fmt=FORMAT, name=name, dtypes=[np.int8])
    if len(dcm) != DCM_BYTES:
        raise FormatError(f"{FORMAT} {name!r}: dcm has {len(dcm)} bytes, expected {DCM_BYTES}")
    if dcm[0] != DECODE_TYPE_PRUNING:
        raise FormatError(f"{FORMAT} {name!r}: dcm[0] (byte offset 0) = {int(dcm[0])}: "
                          f"decode type must be {DECODE_TYPE_PRUNING} (PRUNING)")
    if dcm[1] != DCM_VERSION:
        raise FormatError(f"{FORMAT} {name!r}: dcm[1] (byte offset 1) = {int(dcm[1])}: "
                          f"version must be {DCM_VERSION}")
    want = -(-n // 8)
    if len(bits) != want:
        raise FormatError(f"{FORMAT} {name!r}: bitmask has {len(bits)} bytes, expected "
                          f"ceil({n} / 8) = {want}")
    if n % 8 and int(bits[-1]) & ((1 << (8 - n % 8)) - 1):
        raise FormatError(f"{FORMAT} {name!r}: bitmask[{want - 1}] (byte offset {want - 1}) "
                          f"= {int(bits[-1])}: padding bits past element {n - 1} must be 0")
    kept = int(np.unpackbits(bits).sum())
    if len(values) != kept:
        raise FormatError(f"{FORMAT} {name!r}: values has {len(values)} entries, but the "
                          f"bitmask keeps {kept}")


def decode(fmt: TFLMPrune) -> np.ndarray:
    """Verify, then rebuild the dense int8 weight (zeros at cleared bits)."""
    verify(fmt, fmt.shape)
    n = math.prod(fmt.shape)
    m = np.unpackbits(fmt.bitmask, count=n, bitorder="big").astype(bool)
    out = np.zeros(n, dtype=np.int8)
    out[m] = fmt.values
    return out.reshape(fmt.shape)


def bytes_from_counts(shape, nnz: int, *, name: str = "layer", pointer_bytes: int = 4) -> ByteCount:
    # pointer_bytes: accepted for a uniform signature; TFLM's layout is not a dtmm C-model format
    """Exact :func:`byte_count` from shape and number of kept weights (no arrays).

    >>> bytes_from_counts((32, 3, 3, 16), 461).as_dict()
    {'weights': 461, 'index': 576, 'quant': 384, 'meta': 26, 'total': 1447}
    """
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    nnz = int(nnz)
    if not 0 <= nnz <= n:
        raise FormatError(f"{FORMAT} {name!r}: {nnz} kept weights impossible for shape {shape}")
    return ByteCount(weights=nnz, index=-(-n // 8), quant=quant_bytes(shape[0]), meta=META_BYTES)


def byte_count(fmt: TFLMPrune, pointer_bytes: int = 4) -> ByteCount:
    """Exact bytes of an encoded layer (does not verify)."""
    return ByteCount(weights=int(fmt.values.nbytes), index=int(fmt.bitmask.nbytes),
                     quant=quant_bytes(fmt.shape[0]), meta=META_BYTES)
