"""Build C code for the host or an emulated Cortex-M and run it there.

Targets: ``host`` (native gcc), ``cortex-m4`` (QEMU ``mps2-an386``), ``cortex-m7``
(``mps2-an500``) and ``cortex-m55`` with Helium/MVE (``mps3-an547``).  Firmware gets
startup code, a linker script per memory map, newlib-nano with semihosting I/O, exit
codes through SYS_EXIT_EXTENDED, a fault handler, and exact executed-instruction
counts between ``dtmm_bench_start()`` / ``dtmm_bench_stop()`` (``dtmm_platform.h``).

>>> import pathlib, tempfile
>>> from dtmm.codegen.platform import build, run
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "main.c").write_text('''
... #include <stdio.h>
... #include "dtmm_platform.h"
... int main(void) { unsigned s = 0;
...   dtmm_bench_start(); for (int i = 0; i < 10; ++i) s += i * i; dtmm_bench_stop();
...   printf("%u\\\\n", s); return 0; }''')
>>> res = run(build("host", [d / "main.c"], out_dir=d / "out"))
>>> res.exit_code, res.stdout, res.instructions
(0, '285\\n', None)
"""

from .boards import BOARDS, Board, board_table, emulator_note, get_board
from .arrays import c_array, parse_hex, parse_hex_all
from .runner import FAULT_EXIT_CODE, RunError, RunResult, describe_fault, plugin_path, qemu_command, run
from .targets import SIMD_LEVELS, TARGETS, MemoryRegion, Target, get_target
from .toolchain import (
    SUPPORT_DIR,
    Artifact,
    RegionOverflowError,
    build,
    cache_dir,
    section_sizes,
    size,
    toolchain_available,
)

__all__ = [
    "Artifact",
    "BOARDS",
    "Board",
    "board_table",
    "emulator_note",
    "get_board",
    "FAULT_EXIT_CODE",
    "MemoryRegion",
    "RegionOverflowError",
    "RunError",
    "RunResult",
    "SIMD_LEVELS",
    "SUPPORT_DIR",
    "TARGETS",
    "Target",
    "build",
    "c_array",
    "describe_fault",
    "cache_dir",
    "get_target",
    "parse_hex",
    "parse_hex_all",
    "plugin_path",
    "qemu_command",
    "run",
    "section_sizes",
    "size",
    "toolchain_available",
]
