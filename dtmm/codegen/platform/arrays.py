"""Pass data into firmware as C arrays and get results back as hex lines.

>>> import numpy as np
>>> print(c_array("w", np.array([[1, -2], [3, 4]], dtype=np.int8)))
/* w: int8 shape (2, 2) */
const int8_t w[4] __attribute__((aligned(16))) = {
    1, -2, 3, 4,
};
>>> parse_hex("noise\\nDTMM_HEX y 4 01ff7f80\\n", "y", np.int8)
array([   1,   -1,  127, -128], dtype=int8)
"""

from __future__ import annotations

import numpy as np

from dtmm.errors import BuildError

__all__ = ["c_array", "parse_hex", "parse_hex_all", "C_TYPES"]

#: numpy dtype -> C type used by :func:`c_array`.
C_TYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.uint16): "uint16_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.uint32): "uint32_t",
    np.dtype(np.int64): "int64_t",
    np.dtype(np.uint64): "uint64_t",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}


def c_array(
    name: str,
    array,
    *,
    const: bool = True,
    static: bool = False,
    align: int = 16,
    large: bool = False,
    per_line: int = 16,
) -> str:
    """C definition of a flat array holding ``array`` (C order), with a shape comment.

    ``large=True`` adds ``DTMM_LARGE_CONST`` (or ``DTMM_LARGE_BSS`` when not const) so
    that big tables land in the cortex-m55's 4 MiB SRAM (needs ``dtmm_platform.h``).
    The output needs ``<stdint.h>``.
    """
    arr = np.asarray(array)
    if arr.dtype not in C_TYPES:
        raise BuildError(f"c_array: unsupported dtype {arr.dtype} for {name!r}")
    ctype = C_TYPES[arr.dtype]
    flat = arr.reshape(-1)
    if arr.dtype.kind == "f":
        items = [repr(float(v)) + ("f" if arr.dtype == np.float32 else "") for v in flat]
    elif arr.dtype == np.int32:
        items = [str(int(v)) if int(v) != -(2**31) else "(-2147483647 - 1)" for v in flat]
    elif arr.dtype == np.int64:
        items = [f"{int(v)}LL" if int(v) != -(2**63) else "(-9223372036854775807LL - 1)" for v in flat]
    elif arr.dtype.kind == "u" and arr.dtype.itemsize >= 4:
        items = [f"{int(v)}u" + ("LL" if arr.dtype.itemsize == 8 else "") for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    attrs = []
    if align:
        attrs.append(f"__attribute__((aligned({align})))")
    if large:
        attrs.append("DTMM_LARGE_CONST" if const else "DTMM_LARGE_BSS")
    quals = ("static " if static else "") + ("const " if const else "")
    n = max(1, flat.size)
    lines = [f"/* {name}: {arr.dtype} shape {tuple(arr.shape)} */",
             f"{quals}{ctype} {name}[{n}] {' '.join(attrs)}".rstrip() + " = {"]
    if flat.size == 0:
        lines.append("    0,")
    for i in range(0, flat.size, per_line):
        lines.append("    " + ", ".join(items[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def parse_hex_all(stdout: str) -> dict[str, bytes]:
    """Every ``DTMM_HEX <name> <nbytes> <hex>`` line printed by ``dtmm_print_hex``.

    >>> parse_hex_all("DTMM_HEX a 2 0102\\nDTMM_HEX b 0 \\n")
    {'a': b'\\x01\\x02', 'b': b''}
    """
    out: dict[str, bytes] = {}
    for line in stdout.splitlines():
        if not line.startswith("DTMM_HEX "):
            continue
        parts = line.split()
        if len(parts) not in (3, 4):
            raise BuildError(f"malformed DTMM_HEX line: {line[:80]!r}")
        name, nbytes = parts[1], int(parts[2])
        data = bytes.fromhex(parts[3]) if len(parts) == 4 else b""
        if len(data) != nbytes:
            raise BuildError(f"DTMM_HEX {name}: expected {nbytes} bytes, got {len(data)} (truncated output?)")
        out[name] = data
    return out


def parse_hex(stdout: str, name: str, dtype=np.uint8, shape=None) -> np.ndarray:
    """The array ``name`` printed by ``dtmm_print_hex`` (little-endian ``dtype``, optional ``shape``)."""
    found = parse_hex_all(stdout)
    if name not in found:
        raise BuildError(f"no DTMM_HEX output named {name!r} (found: {sorted(found) or 'none'})")
    arr = np.frombuffer(found[name], dtype=np.dtype(dtype).newbyteorder("<")).astype(np.dtype(dtype))
    return arr.reshape(shape) if shape is not None else arr
