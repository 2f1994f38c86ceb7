"""Compressed weight storage formats with exact byte accounting.

Formats (one module each; every module has ``encode``, ``decode``, ``verify``,
``byte_count`` and ``bytes_from_counts`` and a frozen dataclass of plain numpy arrays):

=================  =======================  ===================================  ===============
name               module / class           pruning granularity                  ``kept`` counts
=================  =======================  ===================================  ===============
``"fwcs"``         :mod:`.fwcs` FWCS         filterlet (DTMM)                     filterlets
``"csr"``          :mod:`.csr` CSR           element (unstructured)               weights
``"pattern"``      :mod:`.pattern` Pattern   4-of-9 pattern + kernel removal      kernels
``"dense"``        :mod:`.dense` Dense       structured (a smaller dense tensor)  (ignored)
``"tflm_prune"``   :mod:`.tflm_prune`        element, TFLM bitmask layout         weights
=================  =======================  ===================================  ===============

Every byte is defined in :mod:`dtmm.formats.common` (weights / index / quant / meta,
as in the paper's Fig. 13), identically for all formats.

Example:
    >>> import numpy as np
    >>> w = np.ones((8, 3, 3, 16), np.int8)
    >>> f = encode("fwcs", w, np.ones((8, 3, 3), bool))
    >>> byte_count(f) == estimate_bytes("fwcs", (8, 3, 3, 16), kept=72)
    True
    >>> bool((decode(f) == w).all())
    True
    >>> estimate_bytes("csr", (8, 3, 3, 16), kept=115).total
    451
"""
from __future__ import annotations

from types import ModuleType

from dtmm.errors import FormatError
from dtmm.formats import csr, dense, fwcs, pattern, tflm_prune
from dtmm.formats.common import ByteCount, quant_bytes
from dtmm.formats.csr import CSR
from dtmm.formats.dense import Dense
from dtmm.formats.fwcs import FWCS
from dtmm.formats.pattern import Pattern
from dtmm.formats.tflm_prune import TFLMPrune

FORMATS: dict[str, ModuleType] = {
    "fwcs": fwcs, "csr": csr, "pattern": pattern, "dense": dense, "tflm_prune": tflm_prune,
}
_BY_CLASS = {FWCS: fwcs, CSR: csr, Pattern: pattern, Dense: dense, TFLMPrune: tflm_prune}

__all__ = ["FORMATS", "ByteCount", "CSR", "Dense", "FWCS", "Pattern", "TFLMPrune",
           "byte_count", "decode", "encode", "estimate_bytes", "format_module", "quant_bytes",
           "verify", "csr", "dense", "fwcs", "pattern", "tflm_prune"]


def format_module(name_or_fmt) -> ModuleType:
    """The module implementing a format, by name (``"fwcs"``) or by encoded object."""
    if isinstance(name_or_fmt, str):
        try:
            return FORMATS[name_or_fmt]
        except KeyError:
            raise FormatError(f"unknown format {name_or_fmt!r}; known: {sorted(FORMATS)}") from None
    try:
        return _BY_CLASS[type(name_or_fmt)]
    except KeyError:
        raise FormatError(f"not an encoded layer: {type(name_or_fmt).__name__}") from None


def encode(format_name: str, weight, mask=None, **kw):
    """Encode ``weight`` with ``mask`` in the named format (keywords go to the module)."""
    return format_module(format_name).encode(weight, mask, **kw)


def decode(fmt):
    """Verify and decode any encoded layer to its dense int8 weight."""
    return format_module(fmt).decode(fmt)


def verify(fmt, expected_shape) -> None:
    """Verify any encoded layer against ``expected_shape``; raises FormatError."""
    format_module(fmt).verify(fmt, expected_shape)


def byte_count(fmt, pointer_bytes: int = 4) -> ByteCount:
    """Exact bytes of any encoded layer in the generated C model (see :mod:`.footprint`)."""
    return format_module(fmt).byte_count(fmt, pointer_bytes=pointer_bytes)


def estimate_bytes(format_name: str, shape, kept: int | None = None, **kw) -> ByteCount:
    """Exact bytes of a layer from counts only (no arrays, no I/O): equals
    ``byte_count(encode(...))`` for any encoding with that shape and kept count.

    ``kept`` is in the format's unit (see the table above); for ``"dense"`` pass the
    shrunken shape and no ``kept``. Extra keywords go to the module's
    ``bytes_from_counts`` (e.g. ``n_tail_filterlets``, ``size`` for linear FWCS).
    """
    mod = format_module(format_name)
    if mod is dense:
        return dense.bytes_from_counts(shape, **kw)
    if kept is None:
        raise FormatError(f"estimate_bytes({format_name!r}): the kept count is required")
    return mod.bytes_from_counts(shape, kept, **kw)
