"""Target descriptions: compiler flags, QEMU machine and memory map.

Four targets exist: ``host`` (native gcc; no counting) and three emulated
Cortex-M cores run under ``qemu-system-arm`` with semihosting.

>>> from dtmm.codegen.platform import get_target
>>> t = get_target("cortex-m55")
>>> t.qemu_machine, t.region("DTCM").size // 1024
('mps3-an547', 512)
>>> sorted(t.isa_defines())
['DTMM_ARCH_DSP', 'DTMM_ARCH_MVE']
>>> t.isa_defines(simd="scalar")
{'DTMM_FORCE_SCALAR': '1'}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dtmm.errors import BuildError

__all__ = ["MemoryRegion", "Target", "TARGETS", "get_target", "SIMD_LEVELS"]

KiB = 1024
MiB = 1024 * KiB

#: ``simd`` choices for :meth:`Target.isa_defines`: ``"auto"`` (the best the core has),
#: ``"dsp"`` (no MVE: DSP/SIMD32 only) and ``"scalar"`` (plain C kernel paths).
SIMD_LEVELS = ("auto", "dsp", "scalar")


@dataclass(frozen=True)
class MemoryRegion:
    """One linker ``MEMORY`` region.

    ``role`` is ``"code"`` (vectors, code, read-only data, .data load image),
    ``"ram"`` (.data, .bss, heap, stack) or ``"large"`` (tables and buffers marked
    ``DTMM_LARGE_CONST`` / ``DTMM_LARGE_BSS``).
    """

    name: str
    origin: int
    size: int
    attrs: str
    role: str
    description: str = ""

    def linker_line(self) -> str:
        return f"    {self.name} ({self.attrs}) : ORIGIN = 0x{self.origin:08X}, LENGTH = 0x{self.size:X}"


@dataclass(frozen=True)
class Target:
    """A build/run target.

    ``cflags`` select the CPU/FPU; ``regions`` is the memory map written into the
    linker script; ``features`` lists the ISA extensions (``"dsp"``, ``"mve"``) that
    :meth:`isa_defines` turns into ``-D`` macros for the kernels.
    """

    name: str
    kind: str  # "host" or "cortex-m"
    cflags: tuple[str, ...] = ()
    qemu_machine: str | None = None
    regions: tuple[MemoryRegion, ...] = ()
    features: tuple[str, ...] = ()
    #: extra -mcpu suffixes used by the ``simd="dsp"``/``"scalar"`` ablations
    nomve_cpu: str | None = None
    #: how stack overflow is caught: "msplim" (v8-M stack limit register), "mpu"
    #: (v7-M: a 1 KiB no-access MPU region under the stack) or "" (host)
    stack_guard: str = ""
    notes: str = field(default="", compare=False)
    #: the real board whose flash / SRAM sizes ``regions`` carry (see
    #: :mod:`dtmm.codegen.platform.boards`), "" for the emulator's own memory map
    board: str = ""

    @property
    def display_name(self) -> str:
        """``"nucleo-f446re (cortex-m4)"`` for a board's target, else the target name."""
        return f"{self.board} ({self.name})" if self.board else self.name

    @property
    def pointer_bytes(self) -> int:
        """Bytes of a data pointer in code built for this target (4 on Cortex-M)."""
        if self.is_host:
            import ctypes

            return ctypes.sizeof(ctypes.c_void_p)
        return 4

    @property
    def is_host(self) -> bool:
        return self.kind == "host"

    @property
    def is_cortex_m(self) -> bool:
        return self.kind == "cortex-m"

    def region(self, name: str) -> MemoryRegion:
        """The memory region called ``name`` (raises :class:`BuildError` if absent)."""
        for r in self.regions:
            if r.name == name:
                return r
        raise BuildError(f"target {self.name} has no memory region {name!r}")

    def region_for(self, role: str) -> MemoryRegion | None:
        """The region holding ``role`` data ("code", "ram" or "large"), or None.

        Only cortex-m55 has a separate ``"large"`` region; elsewhere large data
        stays in the code / RAM regions.
        """
        return next((r for r in self.regions if r.role == role), None)

    def isa_defines(self, simd: str = "auto") -> dict[str, str]:
        """``-D`` macros that pick the kernels' ISA path.

        ``DTMM_ARCH_MVE`` / ``DTMM_ARCH_DSP`` are defined when the path may be
        used; ``simd="dsp"`` drops MVE, ``simd="scalar"`` drops both and defines
        ``DTMM_FORCE_SCALAR``.
        """
        if simd not in SIMD_LEVELS:
            raise BuildError(f"simd must be one of {SIMD_LEVELS}, got {simd!r}")
        if simd == "scalar":
            return {"DTMM_FORCE_SCALAR": "1"}
        out: dict[str, str] = {}
        if "mve" in self.features and simd == "auto":
            out["DTMM_ARCH_MVE"] = "1"
        if "dsp" in self.features:
            out["DTMM_ARCH_DSP"] = "1"
        return out

    def compile_flags(self, simd: str = "auto") -> list[str]:
        """CPU flags for gcc; the ablations also keep the compiler itself off MVE."""
        flags = list(self.cflags)
        if self.nomve_cpu and simd != "auto":
            flags = [self.nomve_cpu if f.startswith("-mcpu=") else f for f in flags]
        return flags


_CM_COMMON = ("-mthumb",)

HOST = Target(name="host", kind="host", cflags=(), notes="native gcc; instruction counts are not available")


def _mps2_target(cpu: str, fpu: str, qemu_machine: str) -> Target:
    """A DSP core on an MPS2 board: 4 MiB ZBT SSRAM as flash, 4 MiB as RAM, MPU stack guard."""
    return Target(
        name=cpu,
        kind="cortex-m",
        cflags=_CM_COMMON + (f"-mcpu={cpu}", "-mfloat-abi=hard", f"-mfpu={fpu}"),
        qemu_machine=qemu_machine,
        regions=(
            MemoryRegion("CODE", 0x00000000, 4 * MiB, "rx", "code", "ZBT SSRAM1 used as flash"),
            MemoryRegion("RAM", 0x20000000, 4 * MiB, "rwx", "ram", "ZBT SSRAM2/3"),
        ),
        features=("dsp",),
        stack_guard="mpu",
    )


CORTEX_M4 = _mps2_target("cortex-m4", "fpv4-sp-d16", "mps2-an386")
CORTEX_M7 = _mps2_target("cortex-m7", "fpv5-d16", "mps2-an500")

CORTEX_M55 = Target(
    name="cortex-m55",
    kind="cortex-m",
    cflags=_CM_COMMON + ("-mcpu=cortex-m55", "-mfloat-abi=hard"),
    qemu_machine="mps3-an547",
    regions=(
        MemoryRegion("ITCM", 0x00000000, 512 * KiB, "rx", "code", "instruction TCM used as flash"),
        MemoryRegion("DTCM", 0x20000000, 512 * KiB, "rwx", "ram", "data TCM"),
        MemoryRegion("SRAM", 0x31000000, 4 * MiB, "rwx", "large", "SSE-300 SRAM for DTMM_LARGE_* data"),
    ),
    features=("dsp", "mve"),
    nomve_cpu="-mcpu=cortex-m55+nomve",
    stack_guard="msplim",
)

#: All targets by name.
TARGETS: dict[str, Target] = {t.name: t for t in (HOST, CORTEX_M4, CORTEX_M7, CORTEX_M55)}


def get_target(target: str | Target) -> Target:
    """Look a target up by name (a :class:`Target` is returned unchanged).

    >>> get_target("cortex-m4").qemu_machine
    'mps2-an386'
    """
    if isinstance(target, Target):
        return target
    try:
        return TARGETS[target]
    except KeyError:
        raise BuildError(f"unknown target {target!r}; known: {', '.join(TARGETS)}") from None
