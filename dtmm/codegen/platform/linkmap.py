"""Who takes the flash of a linked firmware: the linker map read back, part by part.

Every Cortex-M firmware is linked with ``-Map firmware.map`` and built with
``-ffunction-sections -fdata-sections``, so the map lists every input section that
reached the image with its size and the object it came from. :func:`flash_parts`
attributes each flash byte (``size()``'s flash sections: vectors, code, read-only data,
the ``.data`` load image) to one part:

* ``kernels``: per kernel source file (``dtmm_conv_fwcs_s8.c`` ...), every section of
  the object that defines that file's entry function (``dtmm_conv_fwcs_s8``): code and
  its tables;
* ``model_code``: the generated ``model.c``'s functions (the object that defines
  ``dtmm_model_run``);
* ``model_data``: the generated model's constant data (its read-only and large-constant
  sections: weights, index, quantization, op parameters);
* ``libc``: sections from library archives (newlib-nano, libgcc);
* ``startup``: everything else (vectors, start-up, the semihosting harness, ``main``);
* ``padding``: alignment fill, and what an output section holds beyond its listed input
  sections.

The parts add up to ``size(artifact)[0]`` exactly (tested).

Example (``flash_parts(fw.artifact)`` reads a firmware's own map the same way):

    >>> outs, ins = parse_map("Linker script and memory map\\n"
    ...                       ".text  0x100  0x30\\n"
    ...                       " .text.dtmm_conv_s8\\n"
    ...                       "       0x100  0x30 /tmp/a.o\\n")
    >>> outs, ins
    ({'.text': 48}, [('.text', '.text.dtmm_conv_s8', 256, 48, '/tmp/a.o')])
"""
from __future__ import annotations

import re
from pathlib import Path

from dtmm.codegen.platform.toolchain import _FLASH_SECTIONS  # the sections size() counts as flash
from dtmm.errors import DtmmError

__all__ = ["flash_parts", "parse_map", "MapError"]

_HEX = r"0x[0-9a-fA-F]+"
_KERNEL_DIR = Path(__file__).resolve().parents[2] / "csrc"


class MapError(DtmmError):
    """A linker map that cannot be read."""


def parse_map(text: str) -> tuple[dict[str, int], list[tuple[str, str, int, int, str]]]:
    """``(output section sizes, [(output section, input section, address, size, object)])``
    of a GNU ld map file (``object`` is ``""`` for fill). Sizes are as listed: merged
    string sections overlap (see :func:`flash_parts`)."""
    start = text.find("Linker script and memory map")
    if start < 0:
        raise MapError("not a GNU ld map file (no 'Linker script and memory map' part)")
    outs: dict[str, int] = {}
    ins: list[tuple[str, str, int, int, str]] = []
    cur = None
    want_out_size = False            # output section name alone on its line
    pending = None                   # input section name alone on its line
    for line in text[start:].splitlines()[1:]:
        if not line.strip():
            continue
        tok = line.split()
        if not line[0].isspace():
            if tok[0].startswith("."):
                cur = tok[0]
                want_out_size = len(tok) < 3
                if not want_out_size and re.fullmatch(_HEX, tok[1]) and re.fullmatch(_HEX, tok[2]):
                    outs[cur] = int(tok[2], 16)
            else:
                cur = None
            pending = None
            continue
        if cur is None:
            continue
        if want_out_size:
            want_out_size = False
            if len(tok) >= 2 and re.fullmatch(_HEX, tok[0]) and re.fullmatch(_HEX, tok[1]):
                outs[cur] = int(tok[1], 16)
                continue
        if tok[0] == "*fill*" and len(tok) >= 3 and re.fullmatch(_HEX, tok[2]):
            ins.append((cur, "*fill*", int(tok[1], 16), int(tok[2], 16), ""))
            pending = None
            continue
        if pending is not None:
            if len(tok) >= 3 and re.fullmatch(_HEX, tok[0]) and re.fullmatch(_HEX, tok[1]):
                ins.append((cur, pending, int(tok[0], 16), int(tok[1], 16), " ".join(tok[2:])))
            pending = None
            continue
        if tok[0].startswith(".") or tok[0] == "COMMON":
            if len(tok) == 1:
                pending = tok[0]
            elif len(tok) >= 4 and re.fullmatch(_HEX, tok[1]) and re.fullmatch(_HEX, tok[2]):
                ins.append((cur, tok[0], int(tok[1], 16), int(tok[2], 16), " ".join(tok[3:])))
    return outs, ins


def _kernel_entries() -> dict[str, str]:
    """Entry function name -> kernel source file, for every kernel file dtmm ships."""
    return {p.stem: p.name for p in sorted(_KERNEL_DIR.glob("dtmm_*.c"))}


def flash_parts(artifact) -> dict:
    """The firmware's flash by part (see the module docstring): ``{"kernels": {file: B},
    "model_code": B, "model_data": B, "libc": B, "startup": B, "padding": B,
    "flash": B}``."""
    path = Path(artifact.build_dir) / "firmware.map"
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise MapError(f"{path}: cannot read the linker map ({e.strerror})") from None
    outs, ins = parse_map(text)
    entries = _kernel_entries()
    owner: dict[str, str] = {}                   # object -> part
    for _, name, _, _, obj in ins:
        fn = name.split(".", 2)[2] if name.startswith(".text.") else None
        if fn in entries:
            owner[obj] = "kernel:" + entries[fn]
        elif fn == "dtmm_model_run":
            owner[obj] = "model"
    parts = {"kernels": {}, "model_code": 0, "model_data": 0, "libc": 0, "startup": 0, "padding": 0}
    for out in _FLASH_SECTIONS:
        listed, end = 0, None
        # in address order, each byte counted once: the linker merges identical strings of
        # SHF_MERGE sections, and the map lists the later ones with their unmerged size
        for sec, name, addr, n, obj in sorted((e for e in ins if e[0] == out), key=lambda e: e[2]):
            hi = addr + n
            n = max(0, hi - max(addr, end if end is not None else addr))
            end = hi if end is None else max(end, hi)
            listed += n
            who = owner.get(obj)
            if not obj:
                parts["padding"] += n
            elif who and who.startswith("kernel:"):
                k = who.split(":", 1)[1]
                parts["kernels"][k] = parts["kernels"].get(k, 0) + n
            elif who == "model":
                parts["model_code" if name.startswith(".text") else "model_data"] += n
            elif ".a(" in obj:
                parts["libc"] += n
            else:
                parts["startup"] += n
        parts["padding"] += max(0, outs.get(out, 0) - listed)
    parts["flash"] = (sum(parts["kernels"].values()) + parts["model_code"] + parts["model_data"]
                      + parts["libc"] + parts["startup"] + parts["padding"])
    return parts
