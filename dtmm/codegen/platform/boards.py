"""Real boards: their MCU's flash and SRAM, and a target that links against those sizes.

The emulated targets (:mod:`dtmm.codegen.platform.targets`) use QEMU's memory maps:
``cortex-m4`` / ``cortex-m7`` get the MPS2 boards' 4 MiB of code and 4 MiB of RAM, far more
than most Cortex-M4/M7 chips have. A :class:`Board` keeps the emulator's region addresses
(so the firmware still runs under QEMU) but gives each region the real chip's length, so a
model that does not fit the chip fails at link time with a
:class:`~dtmm.codegen.platform.RegionOverflowError` naming the region and the overflow.

>>> b = get_board("nucleo-f446re")
>>> t = b.target()
>>> t.name, t.board, t.region("CODE").size // 1024, t.region("RAM").size // 1024
('cortex-m4', 'nucleo-f446re', 512, 128)
>>> get_board("NUCLEO-F746ZG").target().region("RAM").size // 1024
320
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from dtmm.errors import BuildError, InvalidArgument

from .targets import Target, get_target

__all__ = ["Board", "BOARDS", "get_board", "board_table", "emulator_note", "resolve_target"]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Board:
    """A real board: its MCU, core (a dtmm target name) and memory.

    ``flash_bytes`` / ``sram_bytes`` are the chip's on-chip flash (code and constants) and
    SRAM (data, arena, stack); they are the default ``--flash`` / ``--ram`` budgets of
    ``dtmm compress --board``. ``regions`` gives, per region of the emulated target's
    linker map, the length the board has there ((name, bytes, what) triples); regions not
    named are dropped. ``source`` cites the datasheet the figures come from.
    """

    name: str
    mcu: str
    core: str
    flash_bytes: int
    sram_bytes: int
    regions: tuple[tuple[str, int, str], ...]
    source: str
    note: str = ""

    def target(self) -> Target:
        """The core's emulated target with this board's region lengths (same addresses)."""
        base = get_target(self.core)
        sizes = {name: (n, what) for name, n, what in self.regions}
        regs = []
        for r in base.regions:
            if r.name not in sizes:
                continue
            n, what = sizes[r.name]
            if n > r.size:        # the firmware would link but not run under QEMU
                raise BuildError(f"board {self.name}: region {r.name} of {n} bytes is larger "
                                 f"than the emulator's ({r.size} bytes)")
            regs.append(replace(r, size=n, description=f"{self.mcu} {what}"))
        return replace(base, regions=tuple(regs), board=self.name,
                       notes=f"{self.mcu} memory sizes on the {base.qemu_machine} memory map")


#: The boards ``--board`` knows, by name. Figures are the MCUs' datasheet values.
BOARDS: dict[str, Board] = {b.name: b for b in (
    # ST DS10693 (STM32F446xC/E datasheet), "Memories": up to 512 Kbytes of Flash memory,
    # 128 Kbytes of SRAM (112 KB SRAM1 + 16 KB SRAM2, contiguous at 0x20000000).
    # The paper's board (NUCLEO-F446RE: STM32F446RET6, Cortex-M4F at 180 MHz).
    Board("nucleo-f446re", "STM32F446RE", "cortex-m4", 512 * KiB, 128 * KiB,
          (("CODE", 512 * KiB, "flash"), ("RAM", 128 * KiB, "SRAM")),
          "ST DS10693: 512 KB flash, 128 KB SRAM"),
    # ST DS10916 (STM32F745xx/STM32F746xx datasheet): 1 Mbyte of Flash memory, 320 Kbytes
    # of SRAM including 64 Kbytes of data TCM RAM (DTCM 64 KB + SRAM1 240 KB + SRAM2 16 KB,
    # contiguous at 0x20000000); the 16 KB ITCM RAM and 4 KB backup SRAM are not counted.
    Board("nucleo-f746zg", "STM32F746ZG", "cortex-m7", 1024 * KiB, 320 * KiB,
          (("CODE", 1024 * KiB, "flash"), ("RAM", 320 * KiB, "SRAM (DTCM + SRAM1 + SRAM2)")),
          "ST DS10916: 1 MB flash, 320 KB SRAM (incl. 64 KB DTCM)"),
    # Arm AN547 (Corstone-300 FPGA image for the MPS3 board, Cortex-M55 with Helium), its
    # memory map (also QEMU's mps3-an547, hw/arm/mps2-tz.c an547_raminfo): ITCM 512 KB at
    # 0x00000000, DTCM 512 KB (4 x 128 KB) at 0x20000000, SRAM 2 MB at 0x01000000 and
    # 4 MB at 0x21000000 (secure alias 0x31000000), QSPI flash 8 MB at 0x28000000.
    # The board has no on-chip flash: the image is loaded into the ITCM (code) and the
    # 4 MB SRAM (DTMM_LARGE_* constants and buffers). flash_bytes / sram_bytes, the
    # default compress budgets, count only the ITCM / DTCM (conservative: the link itself
    # also uses the 4 MB SRAM).
    Board("mps3-an547", "Corstone-300 (MPS3 AN547)", "cortex-m55", 512 * KiB, 512 * KiB,
          (("ITCM", 512 * KiB, "ITCM"), ("DTCM", 512 * KiB, "DTCM"),
           ("SRAM", 4 * MiB, "SRAM (large constants and buffers)")),
          "Arm AN547: ITCM 512 KB, DTCM 512 KB, 2 + 4 MB SRAM",
          note="+ 4 MB SRAM for DTMM_LARGE_* data"),
)}


def get_board(name: str) -> Board:
    """The board called ``name`` (case-insensitive); raises InvalidArgument listing the known ones."""
    b = BOARDS.get(str(name).strip().lower())
    if b is None:
        raise InvalidArgument(f"unknown board {name!r}; known: {', '.join(BOARDS)} (see `dtmm boards`)")
    return b


def board_table() -> str:
    """The board table as text (``dtmm boards``).

    >>> print(board_table().splitlines()[0])
    board          MCU                        core          flash     SRAM  source
    """
    def kib(n: int) -> str:
        return f"{n // MiB} MiB" if n % MiB == 0 else f"{n // KiB} KiB"

    lines = [f"{'board':<15}{'MCU':<27}{'core':<12}{'flash':>7}{'SRAM':>9}  source"]
    for b in BOARDS.values():
        lines.append(f"{b.name:<15}{b.mcu:<27}{b.core:<12}{kib(b.flash_bytes):>7}"
                     f"{kib(b.sram_bytes):>9}  {b.source}" + (f" ({b.note})" if b.note else ""))
    return "\n".join(lines)


def emulator_note(target: str) -> str | None:
    """A one-line note for a Cortex-M4/M7 target given without a board, else None.

    >>> emulator_note("cortex-m55") is None
    True
    """
    t = get_target(target)
    if t.board or t.name not in ("cortex-m4", "cortex-m7"):
        return None
    code, ram = t.region_for("code"), t.region_for("ram")
    assert code is not None and ram is not None
    return (f"note: {t.name} links against the emulator's memory map (QEMU {t.qemu_machine}: "
            f"{code.size // MiB} MiB code, {ram.size // MiB} MiB RAM), larger than most "
            f"{t.name} chips; add --board NAME to check the fit on a real one (dtmm boards)")


def resolve_target(target: str | None, board: str | None, default: str) -> Target:
    """The target of ``--target`` / ``--board``: the board's (its core, its memory sizes)
    when ``board`` is given, else ``target`` (or ``default``). A ``target`` that is not the
    board's core raises InvalidArgument.

    >>> resolve_target(None, "nucleo-f446re", "host").display_name
    'nucleo-f446re (cortex-m4)'
    >>> resolve_target("cortex-m7", "nucleo-f446re", "host")
    Traceback (most recent call last):
    ...
    dtmm.errors.InvalidArgument: --board nucleo-f446re is a cortex-m4 board (STM32F446RE); drop --target cortex-m7 or give --target cortex-m4
    """
    if board is None:
        return get_target(target or default)
    b = get_board(board)
    if target is not None and target != b.core:
        raise InvalidArgument(f"--board {b.name} is a {b.core} board ({b.mcu}); drop --target "
                              f"{target} or give --target {b.core}")
    return b.target()
