"""Firmware flash (number (c)) and ``.tflite`` size (number (a)) of a strategy, from measured tables.

The generated model's constant bytes (b) are exact (:mod:`dtmm.formats.footprint`); the
firmware adds to them what the compiler and linker make:

``flash = const_bytes + base + sum(kernel code of each kernel source linked)
          + sum(call code of each op) + per_array * (number of const arrays)``

``base`` is the start-up code, libc, the harness and the fixed part of ``model.c``;
kernel code per source file (``dtmm_conv_fwcs_s8.c`` ...) and per-op call code (the
struct set-up and the call in ``dtmm_model_run``) are fitted per target by least
squares on firmwares built from designed graphs (``dtmm calibrate`` measures them with
the linker's own sizes, :func:`dtmm.codegen.platform.size`); ``per_array`` is the mean
16-byte alignment padding. ``static_ram``: the firmware's ``.data + .bss`` beyond the
arena. The ``.tflite`` file is estimated the same way from its data bytes, channels,
ops and tensors (flatbuffer tables and names vary a little; it is an estimate and the
plan says so).

Example:
    >>> c = CodeSizes("cortex-m55", base=9000, kernels={"dtmm_conv_s8.c": 2000},
    ...               calls={"conv2d": 60}, per_array=7.5, static_ram=1100)
    >>> c.firmware_flash(10_000, {"conv2d": 2}, n_arrays=8)
    21180
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dtmm.codegen.plan import KERNEL_SOURCES
from dtmm.formats.footprint import OP_ARRAYS
from dtmm.schedule.space import ScheduleError

__all__ = ["CodeSizes", "op_counts", "layer_op_kind", "default_code_sizes", "FLASH_MARGIN"]

#: Plans aim at this share of a flash budget: the firmware flash above is an estimate
#: (within about 0.3 % of the linked image in BENCHMARKS.md ``bench_schedule``), and a
#: plan must still fit once linked. The const bytes (b) are exact and need no margin.
FLASH_MARGIN = 0.995


@dataclass
class CodeSizes:
    """Measured code-size table of one target (see the module docstring)."""

    target: str
    base: float
    kernels: dict[str, float]
    calls: dict[str, float]
    per_array: float
    static_ram: int
    tflite: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def firmware_flash(self, const_bytes: int, kinds: dict[str, int], *, n_arrays: int) -> int:
        """Flash of a firmware with ``kinds`` ops (``{kind: count}``) and ``const_bytes``."""
        code = self.base + self.per_array * n_arrays
        for k in {KERNEL_SOURCES[k] for k in kinds if k in KERNEL_SOURCES}:
            code += self.kernels.get(k, 0.0)
        for k, n in kinds.items():
            code += self.calls.get(k, 0.0) * n
        return int(round(const_bytes + code))

    def tflite_estimate(self, data_bytes: int, channels: int, n_ops: int, n_tensors: int) -> int:
        t = self.tflite
        if not t:
            return 0
        return int(round(t.get("base", 0) + t.get("data", 1.0) * data_bytes
                         + t.get("channels", 0) * channels + t.get("ops", 0) * n_ops
                         + t.get("tensors", 0) * n_tensors))

    # -- used by CostModel
    def flash_bytes(self, cm, s, lcs, const: int) -> int:
        kinds = op_counts(cm, lcs)
        n_arrays = sum(OP_ARRAYS.get(k, 0) * n for k, n in kinds.items())
        return self.firmware_flash(const, kinds, n_arrays=n_arrays)

    def tflite_bytes(self, cm, s, lcs, const: int) -> int:
        data = sum(lc.bytes.weights + lc.bytes.index for lc in lcs)
        chans = sum(lc.c_out for lc in lcs)
        g = cm.space.graph
        return self.tflite_estimate(data, chans, len(g.ops), len(g.tensors))

    def to_json(self) -> dict:
        return {"target": self.target, "base": self.base, "kernels": self.kernels,
                "calls": self.calls, "per_array": self.per_array, "static_ram": self.static_ram,
                "tflite": self.tflite, "meta": self.meta}

    @staticmethod
    def from_json(obj: dict, *, source: str = "code sizes") -> "CodeSizes":
        try:
            return CodeSizes(str(obj["target"]), float(obj["base"]),
                             {str(k): float(v) for k, v in obj["kernels"].items()},
                             {str(k): float(v) for k, v in obj["calls"].items()},
                             float(obj["per_array"]), int(obj["static_ram"]),
                             {str(k): float(v) for k, v in obj.get("tflite", {}).items()},
                             dict(obj.get("meta", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ScheduleError(f"{source}: malformed code-size table ({type(e).__name__}: {e})") from None


def layer_op_kind(layer, fmt: str) -> str:
    """The code-size kind of a prunable layer in format ``fmt``: ``conv2d`` /
    ``fully_connected`` dense, a compressed conv its format, an FWCS fully connected layer
    ``compressed_fully_connected`` (the keys of :data:`~dtmm.codegen.plan.KERNEL_SOURCES`)."""
    if layer.kind == "fc":
        return "fully_connected" if fmt == "dense" else "compressed_fully_connected"
    return "conv2d" if fmt == "dense" else fmt


def op_counts(cm, lcs) -> dict[str, int]:
    """``{op kind: count}`` of the pruned model (a compressed conv counts as its format)."""
    kinds: dict[str, int] = {}
    for lc, ly in zip(lcs, cm.space.layers):
        k = layer_op_kind(ly, lc.format)
        kinds[k] = kinds.get(k, 0) + 1
    for _, op in cm._others:
        kinds[op.kind] = kinds.get(op.kind, 0) + 1
    return kinds


def default_code_sizes(target: str) -> CodeSizes:
    """The code-size table shipped with the target's calibration."""
    import json

    from dtmm.schedule.latency import CALIBRATION_DIR

    path = CALIBRATION_DIR / f"{target}.json"
    if not path.is_file():
        raise ScheduleError(f"no shipped calibration for target {target!r}")
    obj = json.loads(path.read_text())
    if "code" not in obj:
        raise ScheduleError(f"{path}: the calibration has no code-size table")
    return CodeSizes.from_json(obj["code"], source=str(path))
