"""Mutations of ``.tflite`` files: structure-aware (the flatbuffer object tree) and byte-level.

:func:`mutant` makes mutant ``i`` of a base file deterministically from ``(seed, i)``,
so a finding is reproduced from its seed and index alone. Structure-aware mutations
parse the file into the schema's object API (``ModelT``), change one to three fields
and pack it again; they cover every field dtmm reads:

=================  =============================================================
target             what changes
=================  =============================================================
``name``           tensor names and op names in dtmm's metadata: comment breakers
                   (``*/``, ``//``), newlines, NUL, ``#``, ``??``, backslashes,
                   quotes, terminal escapes, non-ASCII, 5,000-character names
``shape``          a dimension set to 0, -1, +-1, 65,536, 2**31 - 1; a dimension
                   added or removed
``type``           a tensor's TensorType
``buffer_index``   a tensor's buffer index (in and out of range)
``quantization``   scales (0, negative, NaN, inf, 1e-45, 1e20, x2), zero points
                   (128, -129, 1000, 2**40, -2**31), quantized dimension, one
                   scale or zero point added or dropped, quantization removed
``buffer_data``    one element of a weight / bias / constant buffer set to an edge
                   value, a buffer truncated or extended
``format_array``   one entry of an FWCS / CSR / pattern array (``cptr``, ``fidx``,
                   ``col``, ``rowptr``, ``kidx``, ``kptr``, ``pid``, ``arr``,
                   ``values``) set to an edge value, +-1, or two entries swapped
``options``        a builtin option (stride, padding, filter size, dilation, fused
                   activation, axis, beta, depth multiplier, new shape, ...)
``custom_options`` one key of a custom op's flexbuffers map (ints, lists, strings,
                   the format name, ``w_scale``, ``index_bytes``), or its bytes
``op_tensors``     an operator's input / output tensor indices (replaced, -1,
                   duplicated, dropped, added)
``opcode``         builtin code, deprecated code, custom code, version, opcode index
``graph_io``       the subgraph's input / output indices
``op_order``       two operators swapped, one dropped or duplicated
``metadata``       dtmm's JSON metadata replaced by other JSON or garbage
=================  =============================================================

Byte-level mutations: 1-8 bit flips, runs (1-16 bytes) of 0x00 / 0xFF / 0x7F / 0x80,
random bytes overwritten, truncation at a random offset, random bytes appended.

Example:
    >>> from dtmm.runtime.synth import SynthGraph
    >>> from dtmm.tflite.export import to_tflite_bytes
    >>> sg = SynthGraph((4, 4, 2), seed=0); _ = sg.conv(3, 3, pads="same")
    >>> base = to_tflite_bytes(sg.finish())
    >>> m1 = mutant(base, seed=7, index=3)
    >>> m1 == mutant(base, seed=7, index=3), m1.data != base
    (True, True)
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from flatbuffers import flexbuffers

from dtmm.tflite._schema import FILE_IDENTIFIER, schema

__all__ = ["Mutant", "mutant", "HOSTILE_NAMES", "STRUCTURE_TARGETS", "BYTE_KINDS"]

HOSTILE_NAMES = (
    b"x */ int dtmm_fuzz_injected = 1; /* y",
    b"a\nb\r\nc",
    b"#define DTMM_MODEL_NUM_OPS 0",
    b"trigraph ??/ ??= ??'",
    b"back\\slash\\",
    b"nul\x00byte",
    "caf\u00e9 \u202e\u0645\u0631\u062d\u0628\u0627".encode(),
    b"x" * 5000,
    b"// line comment",
    b"\x1b[31mred\x1b[0m\x07",
    b'"quote\' and $(shell touch dtmm_fuzz_pwned)',
    b"",
    b"\xff\xfe invalid utf-8 \xc3",
)
EDGE_INTS = (0, 1, -1, 2, 3, 7, 127, 128, -128, -129, 255, 256, 1000, 65535, 65536,
             2 ** 31 - 1, -2 ** 31, 2 ** 40)
EDGE_FLOATS = (0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-45, 1e-30,
               1e-10, 1e20, 3.4e38, 1.0, 0.5, 1.0 / 256)
STRUCTURE_TARGETS = ("name", "shape", "type", "buffer_index", "quantization", "buffer_data",
                     "format_array", "options", "custom_options", "op_tensors", "opcode",
                     "graph_io", "op_order", "metadata")
BYTE_KINDS = ("bit_flips", "run", "random_bytes", "truncate", "append")
_FORMAT_FIELDS = ("arr", "cptr", "fidx", "values", "col", "rowptr", "kidx", "kptr", "pid")
_NP = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
       schema.TensorType.INT16: np.int16, schema.TensorType.UINT16: np.uint16,
       schema.TensorType.INT32: np.int32, schema.TensorType.UINT32: np.uint32,
       schema.TensorType.INT64: np.int64, schema.TensorType.FLOAT32: np.float32}
_TYPES = tuple(v for k, v in vars(schema.TensorType).items() if not k.startswith("_"))
_BUILTINS = tuple(v for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_"))


@dataclass(frozen=True)
class Mutant:
    """A mutated file: its bytes, ``"structure"`` or ``"bytes"``, and what was changed."""

    data: bytes
    kind: str
    what: str


def _wrap(v: int, dtype) -> int:
    info = np.iinfo(dtype)
    span = int(info.max) - int(info.min) + 1
    return (int(v) - int(info.min)) % span + int(info.min)


def _edge_int(rng, dtype=np.int32, around: int | None = None) -> int:
    r = rng.random()
    if around is not None and r < 0.35:
        v = around + int(rng.choice([-2, -1, 1, 2]))
    elif around is not None and r < 0.45:
        v = around * int(rng.choice([2, 16, 256])) if around else 1
    else:
        v = int(rng.choice(EDGE_INTS))
    return _wrap(v, dtype)


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))] if len(seq) else None


def _str(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else (v or "")


# ----------------------------------------------------------------------------- structure


class _Structure:
    def __init__(self, model: schema.ModelT, rng):
        self.m, self.rng = model, rng
        self.sub = model.subgraphs[0]
        self.tensors = self.sub.tensors or []
        self.ops = self.sub.operators or []

    def tensor(self):
        i = int(self.rng.integers(len(self.tensors)))
        return i, self.tensors[i]

    def name(self) -> str:
        rng = self.rng
        hostile = _pick(rng, HOSTILE_NAMES)
        if rng.random() < 0.5 or not self.m.metadata:
            i, t = self.tensor()
            t.name = hostile
            return f"tensor {i} name = {hostile[:40]!r}"
        meta = self._meta()
        if meta is None or not meta.get("ops"):
            i, t = self.tensor()
            t.name = hostile
            return f"tensor {i} name = {hostile[:40]!r}"
        j = int(rng.integers(len(meta["ops"])))
        key = "name" if rng.random() < 0.7 else "source"
        meta["ops"][j][key] = hostile.decode("utf-8", "replace")
        self._set_meta(meta)
        return f"metadata op {j} {key} = {hostile[:40]!r}"

    def _meta_buffer(self):
        for md in self.m.metadata or []:
            if _str(md.name) == "dtmm" and 0 <= md.buffer < len(self.m.buffers):
                return self.m.buffers[md.buffer]
        return None

    def _meta(self):
        b = self._meta_buffer()
        try:
            meta = json.loads(bytes(b.data).decode()) if b is not None and b.data is not None else None
        except ValueError:
            return None
        ok = isinstance(meta, dict) and isinstance(meta.get("ops"), list) and all(
            isinstance(o, dict) for o in meta["ops"])
        return meta if ok else None

    def _set_meta(self, meta) -> None:
        self._meta_buffer().data = np.frombuffer(json.dumps(meta).encode(), np.uint8).copy()

    def shape(self) -> str:
        i, t = self.tensor()
        shape = [int(s) for s in (t.shape if t.shape is not None else [])]
        r = self.rng.random()
        if r < 0.15 and shape:
            shape.pop(int(self.rng.integers(len(shape))))
        elif r < 0.25:
            shape.insert(int(self.rng.integers(len(shape) + 1)), _edge_int(self.rng, np.int32, 1))
        elif shape:
            d = int(self.rng.integers(len(shape)))
            shape[d] = _edge_int(self.rng, np.int32, shape[d])
        t.shape = np.asarray(shape, np.int32)
        return f"tensor {i} shape = {shape}"

    def type(self) -> str:
        i, t = self.tensor()
        t.type = int(_pick(self.rng, _TYPES)) if self.rng.random() < 0.9 else int(self.rng.integers(0, 127))
        return f"tensor {i} type = {t.type}"

    def buffer_index(self) -> str:
        i, t = self.tensor()
        n = len(self.m.buffers or [])
        t.buffer = int(self.rng.integers(0, n)) if self.rng.random() < 0.7 else _wrap(
            _edge_int(self.rng, np.int64, n), np.uint32)
        return f"tensor {i} buffer = {t.buffer}"

    def quantization(self) -> str:
        rng = self.rng
        cands = [(i, t) for i, t in enumerate(self.tensors) if t.quantization is not None]
        i, t = _pick(rng, cands) if cands else self.tensor()
        q = t.quantization
        if q is None or rng.random() < 0.05:
            t.quantization = None if q is not None else schema.QuantizationParametersT()
            return f"tensor {i} quantization {'removed' if q is not None else 'emptied'}"
        scale = [float(s) for s in (q.scale if q.scale is not None else [])]
        zp = [int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [])]
        r = rng.random()
        if r < 0.4 and scale:
            k = int(rng.integers(len(scale)))
            scale[k] = (scale[k] * float(rng.choice([2.0, 0.5, 1e6, 1e-6])) if rng.random() < 0.3
                        else float(rng.choice(EDGE_FLOATS)))
            what = f"scale[{k}] = {scale[k]!r}"
        elif r < 0.8 and zp:
            k = int(rng.integers(len(zp)))
            zp[k] = _edge_int(rng, np.int64, zp[k])
            what = f"zero_point[{k}] = {zp[k]}"
        elif r < 0.9:
            q.quantizedDimension = _edge_int(rng, np.int32, q.quantizedDimension)
            what = f"quantized_dimension = {q.quantizedDimension}"
        else:
            which = "scale" if rng.random() < 0.5 else "zero_point"
            lst = scale if which == "scale" else zp
            if lst and rng.random() < 0.5:
                lst.pop()
                what = f"one {which} dropped"
            else:
                lst.append(lst[-1] if lst else 1)
                what = f"one {which} added"
        q.scale = np.asarray(scale, np.float32) if scale or q.scale is not None else None
        q.zeroPoint = np.asarray(zp, np.int64) if zp or q.zeroPoint is not None else None
        return f"tensor {i} quantization {what}"

    def _data_tensor(self, fields=None):
        cands = []
        for i, t in enumerate(self.tensors):
            if not 0 < t.buffer < len(self.m.buffers):
                continue
            b = self.m.buffers[t.buffer]
            if b.data is None or len(b.data) == 0 or t.type not in _NP:
                continue
            tail = _str(t.name).rsplit("/", 1)[-1]
            if fields is None or tail in fields:
                cands.append((i, t, b))
        return _pick(self.rng, cands) if cands else None

    def buffer_data(self) -> str:
        got = self._data_tensor()
        if got is None:
            return self.bytes_in_buffer()
        i, t, b = got
        raw = bytes(np.asarray(b.data, np.uint8))
        rng = self.rng
        if rng.random() < 0.15:
            n = len(raw)
            raw = raw[:int(rng.integers(0, n))] if rng.random() < 0.5 else raw + bytes(
                rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
            b.data = np.frombuffer(raw, np.uint8).copy()
            return f"tensor {i} buffer {t.buffer} resized {n} -> {len(raw)} bytes"
        return self._set_element(i, t, b, raw)

    def _set_element(self, i, t, b, raw: bytes) -> str:
        dt = np.dtype(_NP[t.type]).newbyteorder("<")
        if len(raw) < dt.itemsize:
            return self.bytes_in_buffer()
        a = np.frombuffer(raw[:len(raw) // dt.itemsize * dt.itemsize], dt).copy()
        k = int(self.rng.integers(a.size))
        rng = self.rng
        if rng.random() < 0.15 and a.size > 1:
            k2 = int(rng.integers(a.size))
            a[k], a[k2] = a[k2], a[k]
            what = f"entries {k} and {k2} swapped"
        elif np.issubdtype(dt, np.floating):
            a[k] = float(rng.choice(EDGE_FLOATS))
            what = f"[{k}] = {a[k]!r}"
        else:
            v = _edge_int(rng, np.int64, int(a[k]))
            info = np.iinfo(dt)
            a[k] = v if info.min <= v <= info.max else _wrap(v, dt.newbyteorder("="))
            what = f"[{k}] = {int(a[k])}"
        b.data = np.frombuffer(a.tobytes() + raw[a.size * dt.itemsize:], np.uint8).copy()
        return f"tensor {i} ({_str(t.name)[:30]!r}) data{what}"

    def bytes_in_buffer(self) -> str:
        bufs = [(j, b) for j, b in enumerate(self.m.buffers or []) if b.data is not None and len(b.data)]
        if not bufs:
            return self.shape()
        j, b = _pick(self.rng, bufs)
        raw = bytearray(np.asarray(b.data, np.uint8).tobytes())
        k = int(self.rng.integers(len(raw)))
        raw[k] = int(self.rng.integers(256))
        b.data = np.frombuffer(bytes(raw), np.uint8).copy()
        return f"buffer {j} byte {k} = {raw[k]}"

    def format_array(self) -> str:
        got = self._data_tensor(_FORMAT_FIELDS)
        if got is None:
            return self.buffer_data()
        i, t, b = got
        return "format array " + self._set_element(i, t, b, bytes(np.asarray(b.data, np.uint8)))

    def options(self) -> str:
        cands = [(k, o) for k, o in enumerate(self.ops) if o.builtinOptions is not None
                 and vars(o.builtinOptions)]
        if not cands:
            return self.op_tensors()
        k, o = _pick(self.rng, cands)
        opts = o.builtinOptions
        key = _pick(self.rng, sorted(vars(opts)))
        v = getattr(opts, key)
        rng = self.rng
        if isinstance(v, bool):
            new = not v
        elif isinstance(v, float):
            new = float(rng.choice(EDGE_FLOATS))
        elif isinstance(v, int):
            new = _edge_int(rng, np.int32, v)
            if key in ("padding", "fusedActivationFunction", "weightsFormat", "quantizedBiasType"):
                new = _wrap(new if rng.random() < 0.5 else int(rng.integers(0, 8)), np.int8)
        elif v is None or isinstance(v, (list, np.ndarray)):
            lst = [int(x) for x in (v if v is not None else [])]
            if lst and rng.random() < 0.7:
                d = int(rng.integers(len(lst)))
                lst[d] = _edge_int(rng, np.int32, lst[d])
            else:
                lst.append(_edge_int(rng, np.int32, 1))
            new = lst
        else:
            return self.op_tensors()
        setattr(opts, key, new)
        return f"operator {k} option {key} = {new!r}"

    def custom_options(self) -> str:
        cands = [(k, o) for k, o in enumerate(self.ops) if o.customOptions is not None]
        if not cands:
            return self.options()
        k, o = _pick(self.rng, cands)
        raw = bytes(np.asarray(o.customOptions, np.uint8))
        rng = self.rng
        if rng.random() < 0.2:
            ba = bytearray(raw)
            p = int(rng.integers(len(ba)))
            ba[p] = int(rng.integers(256))
            o.customOptions = np.frombuffer(bytes(ba), np.uint8).copy()
            return f"operator {k} custom_options byte {p} = {ba[p]}"
        opts = flexbuffers.Loads(raw)
        key = _pick(rng, sorted(opts))
        v = opts[key]
        if isinstance(v, bool):
            new = not v
        elif isinstance(v, int):
            new = _edge_int(rng, np.int64, v)
        elif isinstance(v, float):
            new = float(rng.choice(EDGE_FLOATS))
        elif isinstance(v, str):
            new = _pick(rng, ["fwcs", "csr", "pattern", "relu", "relu6", "none", "", "x" * 300,
                              HOSTILE_NAMES[0].decode()])
        elif isinstance(v, list):
            new = list(v)
            r = rng.random()
            if new and r < 0.6:
                d = int(rng.integers(len(new)))
                new[d] = (float(rng.choice(EDGE_FLOATS)) if isinstance(new[d], float)
                          else _edge_int(rng, np.int64, int(new[d])) if isinstance(new[d], int)
                          else "x")
            elif new and r < 0.8:
                new.pop()
            else:
                new.append(new[-1] if new else 1)
        elif isinstance(v, dict):
            new = dict(v)
            if new:
                kk = _pick(rng, sorted(new))
                new[kk] = _edge_int(rng, np.int64, int(new[kk]) if isinstance(new[kk], int) else 1)
        else:
            new = None
        if rng.random() < 0.05:
            opts.pop(key)
            what = f"{key} removed"
        else:
            opts[key] = new
            what = f"{key} = {str(new)[:60]}"
        o.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()
        return f"operator {k} custom option {what}"

    def _indices(self, arr, n: int) -> tuple[list[int], str]:
        lst = [int(x) for x in (arr if arr is not None else [])]
        rng = self.rng
        r = rng.random()
        if lst and r < 0.6:
            d = int(rng.integers(len(lst)))
            lst[d] = int(rng.integers(-2, n + 2)) if rng.random() < 0.8 else _edge_int(rng, np.int32, lst[d])
            return lst, f"[{d}] = {lst[d]}"
        if lst and r < 0.75:
            lst.pop(int(rng.integers(len(lst))))
            return lst, "one dropped"
        if lst and r < 0.9:
            lst.append(lst[int(rng.integers(len(lst)))])
            return lst, "one duplicated"
        lst.append(int(rng.integers(-1, n + 1)))
        return lst, f"{lst[-1]} added"

    def op_tensors(self) -> str:
        k = int(self.rng.integers(len(self.ops)))
        o = self.ops[k]
        which = "inputs" if self.rng.random() < 0.7 else "outputs"
        lst, what = self._indices(getattr(o, which), len(self.tensors))
        setattr(o, which, np.asarray(lst, np.int32))
        return f"operator {k} {which} {what}"

    def opcode(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            k = int(rng.integers(len(self.ops)))
            self.ops[k].opcodeIndex = int(rng.integers(-1, len(self.m.operatorCodes) + 2)) % (2 ** 32)
            return f"operator {k} opcode index = {self.ops[k].opcodeIndex}"
        j = int(rng.integers(len(self.m.operatorCodes)))
        c = self.m.operatorCodes[j]
        r = rng.random()
        if r < 0.4:
            c.builtinCode = int(_pick(rng, _BUILTINS))
            c.deprecatedBuiltinCode = min(c.builtinCode, 127) if rng.random() < 0.5 else c.deprecatedBuiltinCode
            return f"opcode {j} builtin = {c.builtinCode}"
        if r < 0.55:
            c.deprecatedBuiltinCode = _wrap(int(rng.integers(0, 256)), np.int8)
            return f"opcode {j} deprecated builtin = {c.deprecatedBuiltinCode}"
        if r < 0.85:
            c.customCode = _pick(rng, ["DTMM_CONV_2D_FWCS", "DTMM_CONV_2D_CSR", "DTMM_CONV_2D_PATTERN",
                                       "TFLite_Detection_PostProcess", "", None,
                                       HOSTILE_NAMES[0].decode()])
            return f"opcode {j} custom code = {c.customCode!r}"
        c.version = _edge_int(rng, np.int32, c.version)
        return f"opcode {j} version = {c.version}"

    def graph_io(self) -> str:
        which = "inputs" if self.rng.random() < 0.5 else "outputs"
        lst, what = self._indices(getattr(self.sub, which), len(self.tensors))
        setattr(self.sub, which, np.asarray(lst, np.int32))
        return f"subgraph {which} {what}"

    def op_order(self) -> str:
        rng = self.rng
        n = len(self.ops)
        r = rng.random()
        if n > 1 and r < 0.5:
            a, b = (int(v) for v in rng.choice(n, 2, replace=False))
            self.ops[a], self.ops[b] = self.ops[b], self.ops[a]
            return f"operators {a} and {b} swapped"
        if n > 1 and r < 0.75:
            k = int(rng.integers(n))
            self.ops.pop(k)
            return f"operator {k} dropped"
        k = int(rng.integers(n))
        import copy
        self.ops.insert(k, copy.deepcopy(self.ops[k]))
        return f"operator {k} duplicated"

    def metadata(self) -> str:
        b = self._meta_buffer()
        if b is None:
            return self.name()
        rng = self.rng
        choices = [b"[]", b"{}", b'{"ops": 5}', b'{"ops": [1, 2, 3]}', b"not json",
                   b'{"ops": [{"name": null}]}', b"\xff\xfe", b'{"ops": [' + b'{"name": "a"},' * 40 + b"{}]}"]
        meta = self._meta()
        if meta is not None and meta.get("ops") and rng.random() < 0.5:
            j = int(rng.integers(len(meta["ops"])))
            meta["ops"][j]["name"] = meta["ops"][(j + 1) % len(meta["ops"])]["name"]   # duplicate
            self._set_meta(meta)
            return f"metadata op {j} name duplicated"
        raw = _pick(rng, choices)
        b.data = np.frombuffer(raw, np.uint8).copy()
        return f"metadata = {raw[:30]!r}"


def _structure(base: bytes, rng) -> tuple[bytes, str]:
    import flatbuffers

    for _ in range(20):
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(base, 0))
        s = _Structure(model, rng)
        whats = []
        try:
            for _ in range(1 if rng.random() < 0.7 else int(rng.integers(2, 4))):
                target = _pick(rng, STRUCTURE_TARGETS)
                whats.append(f"[{target}] {getattr(s, target)()}")
            builder = flatbuffers.Builder(1024)
            builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        except Exception:        # noqa: BLE001 - a value the schema cannot hold: try another
            continue
        return bytes(builder.Output()), "; ".join(whats)
    return base, "no representable structure mutation"


def _bytes(base: bytes, rng) -> tuple[bytes, str]:
    data = bytearray(base)
    kind = _pick(rng, BYTE_KINDS)
    n = len(data)
    if kind == "bit_flips":
        k = int(rng.integers(1, 9))
        pos = rng.integers(0, n, k)
        for p in pos:
            data[int(p)] ^= 1 << int(rng.integers(8))
        return bytes(data), f"{k} bit flips at {sorted(int(p) for p in pos)[:8]}"
    if kind == "run":
        v = int(rng.choice([0x00, 0xFF, 0x7F, 0x80]))
        ln = int(rng.integers(1, 17))
        p = int(rng.integers(0, n))
        data[p:p + ln] = bytes([v]) * len(data[p:p + ln])
        return bytes(data), f"run of {ln} x 0x{v:02X} at {p}"
    if kind == "random_bytes":
        ln = int(rng.integers(1, 9))
        p = int(rng.integers(0, n))
        data[p:p + ln] = rng.integers(0, 256, len(data[p:p + ln]), dtype=np.uint8).tobytes()
        return bytes(data), f"{ln} random bytes at {p}"
    if kind == "truncate":
        p = int(rng.integers(0, n))
        return bytes(data[:p]), f"truncated to {p} bytes"
    ln = int(rng.integers(1, 65))
    return bytes(data) + rng.integers(0, 256, ln, dtype=np.uint8).tobytes(), f"{ln} bytes appended"


def mutant(base: bytes, seed: int, index: int, structure_share: float = 0.65) -> Mutant:
    """Mutant ``index`` of ``base`` for ``seed`` (deterministic)."""
    rng = np.random.default_rng([int(seed), int(index)])
    if rng.random() < structure_share:
        data, what = _structure(base, rng)
        return Mutant(data, "structure", what)
    data, what = _bytes(base, rng)
    return Mutant(data, "bytes", what)

