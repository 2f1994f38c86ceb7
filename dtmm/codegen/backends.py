"""Run a generated C model: on the host through ctypes, or as firmware under QEMU.

* :func:`build_host_model` -> :class:`HostModel`: the model as a host shared library
  (``gcc -O3 -march=native -shared -fPIC`` through :func:`dtmm.codegen.platform.build`,
  cached by content hash), called with ``dtmm_model_invoke_batch`` on a whole int8 batch.
* :func:`build_firmware` / :func:`run_firmware` -> :class:`TargetResult`: the model plus
  a harness ``main.c`` built for ``cortex-m4`` / ``cortex-m7`` / ``cortex-m55`` and run
  under QEMU, inputs passed through ``dtmm_read_input`` (so one firmware serves every
  input set), outputs parsed back from ``DTMM_HEX`` lines, executed instructions counted
  between markers around each ``dtmm_model_invoke`` (QEMU counts instructions, not
  cycles), and sizes from the linked ELF.

A firmware that faults or hangs raises :class:`~dtmm.codegen.platform.RunError`; one
that does not fit raises :class:`~dtmm.codegen.platform.RegionOverflowError` naming the
region; a kernel error or a scratch-size mismatch raises :class:`BuildError`. There is
never a partial result.

Example:
    >>> from dtmm.runtime.synth import SynthGraph
    >>> from dtmm.runtime.reference import run_reference
    >>> sg = SynthGraph((6, 6, 2), seed=0); _ = sg.conv(4, 3, pads="same", activation="relu")
    >>> g = sg.finish(); x = sg.random_input(5)
    >>> bool((build_host_model(g)(x) == run_reference(g, x)).all())
    True
"""
from __future__ import annotations

import ctypes as C
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dtmm.codegen.emit import cached_project
from dtmm.codegen.plan import ModelPlan, plan_model
from dtmm.errors import BuildError
from dtmm.graph.ir import Graph

__all__ = ["HostModel", "Firmware", "TargetResult", "build_host_model", "build_firmware",
           "run_firmware", "run_backend", "BACKEND_TARGETS"]

#: Images per QEMU run in :func:`run_firmware` (the harness streams any number; shorter
#: runs keep each one well inside its timeout).
IMAGES_PER_RUN = 16

#: verify backend name -> platform target name.
BACKEND_TARGETS = {"host": "host", "qemu-m4": "cortex-m4", "qemu-m7": "cortex-m7",
                   "qemu-m55": "cortex-m55"}


def _check_input(plan: ModelPlan, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise BuildError(f"model input must be int8, got {x.dtype}")
    if tuple(x.shape[1:]) != tuple(plan.input.shape):
        raise BuildError(f"model input batch {x.shape} does not match (N, "
                         f"{', '.join(map(str, plan.input.shape))})")
    return np.ascontiguousarray(x)


# ----------------------------------------------------------------------------- host


class HostModel:
    """A generated model loaded from its host shared library; call it on an int8 batch.

    ``workers`` > 1 loads that many copies of the library (each copy has its own static
    arena) and splits a batch across threads (ctypes releases the GIL during the call).
    """

    def __init__(self, plan: ModelPlan, path: Path, workers: int = 1):
        self.plan = plan
        self.path = path
        self.libs = [self._load(self._copy(path, i)) for i in range(max(1, int(workers)))]
        self.lib = self.libs[0]
        bad = self.lib.dtmm_model_check()
        if bad:
            raise BuildError(f"op {plan.steps[bad - 1].op_name!r}: the compiled kernel needs more "
                             f"scratch than planned")

    @staticmethod
    def _copy(path: Path, i: int) -> Path:
        if i == 0:
            return path
        dst = path.with_name(f"{path.stem}.w{i}{path.suffix}")
        if not dst.is_file():
            tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dst)
        return dst

    @staticmethod
    def _load(path: Path):
        from dtmm.codegen.platform.toolchain import check_sanitizer_runtime

        check_sanitizer_runtime()
        lib = C.CDLL(str(path))
        lib.dtmm_model_invoke_batch.restype = C.c_int
        lib.dtmm_model_invoke_batch.argtypes = [C.c_void_p, C.c_void_p, C.c_int32]
        lib.dtmm_model_check.restype = C.c_int
        return lib

    def _run(self, lib, x: np.ndarray, out: np.ndarray) -> None:
        if not x.shape[0]:
            return
        rc = lib.dtmm_model_invoke_batch(x.ctypes.data, out.ctypes.data, x.shape[0])
        if rc:
            failed = C.c_int32.in_dll(lib, "dtmm_model_failed_op").value
            name = self.plan.steps[failed].op_name if 0 <= failed < len(self.plan.steps) else "?"
            raise BuildError(f"op {name!r}: kernel returned status {rc}")

    def __call__(self, x) -> np.ndarray:
        """int8 outputs ``(N, *output_shape)`` of the int8 batch ``x`` ``(N, *input_shape)``."""
        x = _check_input(self.plan, x)
        out = np.zeros((x.shape[0],) + tuple(self.plan.output.shape), np.int8)
        k = len(self.libs) if x.shape[0] >= 2 * len(self.libs) else 1
        if k == 1:
            self._run(self.lib, x, out)
            return out
        bounds = np.linspace(0, x.shape[0], k + 1).astype(int)
        with ThreadPoolExecutor(k) as ex:
            futs = [ex.submit(self._run, self.libs[i], x[bounds[i]:bounds[i + 1]],
                              out[bounds[i]:bounds[i + 1]]) for i in range(k)]
            for f in futs:
                f.result()
        return out


@functools.lru_cache(maxsize=1)
def _host_cpu_key() -> str:
    """A short hash of this machine's CPU (``-march=native`` builds are cached per CPU)."""
    text = platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
        text += "".join(ln for ln in info if ln.startswith(("model name", "flags", "Features")))[:4096]
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_host_model(graph: Graph, *, isa: str = "scalar", native: bool = True,
                     workers: int | None = None) -> HostModel:
    """Generate, build (cached by content hash) and load ``graph`` as a host shared library.

    ``isa``: the kernels' path compiled on the host: ``"scalar"``, the default (plain C
    in its host variant, ``-DDTMM_HOST_FAST -O3``: int16 im2col blocks and contiguous
    dot products that gcc vectorises, see ``dtmm_isa.h``; same planned scratch as the
    plain path), or ``"dsp"`` / ``"mve"`` (the Cortex-M paths with their intrinsics
    replaced by the kernels' exact C models, ``-DDTMM_EMULATE_DSP`` / ``_MVE``; for
    testing those paths). Every path is bit-exact. ``native``: ``-O3 -march=native``
    (plus ``-mprefer-vector-width=256`` on x86-64; the build is cached per CPU), else
    portable code (``-O3`` for ``"scalar"``, ``-O2`` otherwise). Measured on a 2-core
    AVX-512 x86-64 (1,000 mnist 28x28 images, 2 workers): resnet8 ~0.3 s and vgg11
    ~0.6 s with the defaults, ~0.5 s / ~1.5 s without ``native``, against ~2.2 s /
    ~10 s for ``"dsp"``. ``workers``: threads (library copies) per call; default: up
    to 2, one per CPU.
    """
    from dtmm.codegen.emit import emulation_defines
    from dtmm.codegen.platform import build

    plan = plan_model(graph, "host", isa=isa)
    proj = cached_project(plan)
    srcs = [proj / "model.c"] + [proj / "kernels" / s for s in plan.kernel_sources]
    defines = dict(emulation_defines(plan))
    opt, extra = "-O2", []
    if isa == "scalar":
        defines["DTMM_HOST_FAST"] = 1        # the vectorisable plain-C variants (dtmm_isa.h)
        opt = "-O3"
    if native:
        opt, extra = "-O3", ["-march=native"]
        if platform.machine().lower() in ("x86_64", "amd64"):
            # 256-bit vectors: no scalar tail for K = 16 * m (32-lane loops leave one
            # on 9 * C_in taps with C_in = 16), and no 512-bit frequency penalty.
            extra.append("-mprefer-vector-width=256")
        defines["DTMM_HOST_CPU_KEY"] = _host_cpu_key()
    art = build("host", srcs, include_dirs=[proj, proj / "kernels"], kind="shared", opt=opt,
                extra_cflags=extra, defines=defines)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    return HostModel(plan, art.path, workers)


# ----------------------------------------------------------------------------- QEMU


@dataclass(frozen=True)
class Firmware:
    """A built model firmware: its plan, project directory and ELF artifact.

    ``harness_ram_bytes``: RAM of the harness's input/output buffers (not the model's).
    """

    plan: ModelPlan
    project: Path
    artifact: object
    harness_ram_bytes: int
    profile: bool = False

    @property
    def profiled_steps(self) -> tuple[int, ...]:
        """Indices of the plan's steps that run code (one profile region each, in order)."""
        from dtmm.codegen.plan import AliasCall

        return tuple(s.index for s in self.plan.steps if not isinstance(s.call, AliasCall))


@dataclass(frozen=True)
class TargetResult:
    """Outputs and measurements of a model run on an emulated Cortex-M.

    ``instructions``: executed instructions of each ``dtmm_model_invoke`` (one per
    image; QEMU counts instructions, not cycles); for a profiling firmware
    (``build_firmware(..., profile=True)``) the sum of its ops' counts instead, and
    ``op_instructions`` holds, per image, one count per step of the plan (0 for a
    reshape, which runs no code). ``flash_bytes`` / ``ram_bytes``: the
    linked firmware (code + constants + startup/libc; .data + .bss including the
    arena, without the harness buffers and without the reserved stack).
    """

    target: str
    outputs: np.ndarray
    instructions: list[int]
    flash_bytes: int
    ram_bytes: int
    arena_bytes: int
    arena_peak_live: int
    const_bytes: int
    op_instructions: tuple[tuple[int, ...], ...] | None = None
    #: per image, the counting plugin's estimated-cycles MODEL of the inference
    #: (dtmm.bench.cycles: an estimate from the instruction mix, not a measurement)
    estimated_cycles: list[int] | None = None

    @property
    def instructions_per_inference(self) -> int:
        return int(self.instructions[0]) if self.instructions else 0


def _symbol_sizes(elf: Path, names: tuple[str, ...]) -> int:
    proc = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                          check=False)
    total = 0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in names:
            total += int(parts[1], 16)
    return total


def build_firmware(graph: Graph, target: str, *, simd: str = "auto",
                   stack_bytes: int = 16 * 1024, profile: bool = False,
                   defines: dict | None = None, opt: str = "-O2") -> Firmware:
    """Generate and build (cached) the QEMU firmware of ``graph`` for a Cortex-M ``target``.

    ``target`` is a platform target name or a :class:`~dtmm.codegen.platform.Target`.
    ``profile``: build with ``-DDTMM_PROFILE`` so that each op's kernel call is counted
    on its own (:attr:`TargetResult.op_instructions`). ``defines``: extra ``-D`` macros
    (e.g. a kernel variant of an ablation, ``DTMM_FWCS_VARIANT_NO_ILP``). ``opt``: the
    optimization flag; every measured figure is at -O2, the default (the kernels' asm loops
    need -O2 or -O3, see dtmm_isa.h: at -O0, -Os and -Oz they build as C by themselves; at
    -O1 and -Og pass ``defines={"DTMM_NO_ASM": None}``).
    Raises :class:`~dtmm.codegen.platform.RegionOverflowError` when it does not fit.
    """
    from dtmm.codegen.platform import build, get_target

    t = get_target(target)
    if not t.is_cortex_m:
        raise BuildError(f"build_firmware needs a Cortex-M target, got {t.name}")
    plan = plan_model(graph, t, simd=simd)
    proj = cached_project(plan)
    srcs = ([proj / "main.c", proj / "model.c"]
            + [proj / "kernels" / s for s in plan.kernel_sources])
    defs = dict(defines or {})
    if profile:
        defs["DTMM_PROFILE"] = 1
    art = build(t, srcs, include_dirs=[proj, proj / "kernels"], simd=simd, stack_bytes=stack_bytes,
                defines=defs or None, opt=opt)
    harness = _symbol_sizes(art.path, ("harness_in", "harness_out"))
    return Firmware(plan, proj, art, harness, bool(profile))


def run_firmware(fw: Firmware, x, *, timeout_s: float = 120) -> TargetResult:
    """Run ``fw`` on the int8 batch ``x`` (in QEMU runs of at most ``IMAGES_PER_RUN`` images)."""
    from dtmm.codegen.platform import parse_hex_all, run, size

    plan = fw.plan
    x = _check_input(plan, x)
    n = x.shape[0]
    outs = np.zeros((n,) + tuple(plan.output.shape), np.int8)
    counts: list[int] = []
    cycles: list[int] = []
    per_op: list[tuple[int, ...]] = []
    coded = fw.profiled_steps if fw.profile else ()
    regions = len(coded) if fw.profile else 1
    step = IMAGES_PER_RUN
    for i0 in range(0, max(n, 1), step):
        chunk = x[i0:i0 + step]
        res = run(fw.artifact, timeout_s=timeout_s, input_bytes=chunk.tobytes())
        if res.exit_code != 0:
            msg = res.stdout.strip().splitlines()[-1:] or [""]
            raise BuildError(f"model firmware on {plan.target} exited with {res.exit_code}: "
                             f"{_explain(plan, msg[0])}")
        got = parse_hex_all(res.stdout)
        for j in range(len(chunk)):
            data = got.get(f"y{j}")
            if data is None or len(data) != plan.output.nbytes:
                raise BuildError(f"model firmware on {plan.target}: output y{j} missing or short")
            outs[i0 + j] = np.frombuffer(data, np.int8).reshape(plan.output.shape)
        ins = list(res.instructions or [])
        if len(ins) != max(len(chunk), 1) * regions:
            raise BuildError(f"model firmware on {plan.target}: {len(ins)} instruction counts "
                             f"for {len(chunk)} images ({regions} per image)")
        cyc = list(res.estimated_cycles or [])
        for j in range(max(len(chunk), 1)):
            got_j = ins[j * regions:(j + 1) * regions]
            if len(cyc) == len(ins):
                cycles.append(int(sum(cyc[j * regions:(j + 1) * regions])))
            if fw.profile:
                row = [0] * len(plan.steps)
                for k, c in zip(coded, got_j):
                    row[k] = int(c)
                per_op.append(tuple(row))
            counts.append(int(sum(got_j)))
    flash, ram = size(fw.artifact)
    return TargetResult(plan.target, outs, counts, flash, ram - fw.harness_ram_bytes,
                        plan.arena.size, plan.arena.peak_live, plan.const_bytes,
                        tuple(per_op) if fw.profile else None, cycles or None)


def _explain(plan: ModelPlan, line: str) -> str:
    parts = line.split()
    if line.startswith("DTMM_MODEL_ERROR") and "op" in parts:
        k = int(parts[parts.index("op") + 1])
        if 0 <= k < len(plan.steps):
            return f"op {plan.steps[k].op_name!r}: {line}"
    if line.startswith("DTMM_SCRATCH_MISMATCH"):
        k = int(parts[-1])
        if 0 <= k < len(plan.steps):
            return f"op {plan.steps[k].op_name!r}: kernel scratch larger than planned ({line})"
    return line


def run_backend(graph: Graph, backend: str, x, *, timeout_s: float = 120):
    """int8 outputs of ``graph`` on ``x`` for a verify backend, and a TargetResult (QEMU) or None.

    ``backend``: ``"host"``, ``"qemu-m4"``, ``"qemu-m7"`` or ``"qemu-m55"``.
    """
    if backend not in BACKEND_TARGETS:
        raise BuildError(f"unknown backend {backend!r}; known: {', '.join(BACKEND_TARGETS)}")
    target = BACKEND_TARGETS[backend]
    if target == "host":
        return build_host_model(graph)(x), None
    res = run_firmware(build_firmware(graph, target), x, timeout_s=timeout_s)
    return res.outputs, res
