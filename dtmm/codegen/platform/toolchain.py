"""Compile C sources plus a ``main()`` for a target; cache by content hash.

>>> from dtmm.codegen.platform import build, run          # doctest: +SKIP
>>> art = build("cortex-m4", ["main.c"], defines={"N": 8})  # doctest: +SKIP
>>> run(art).stdout                                        # doctest: +SKIP
'hello\\n'
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Iterable, Mapping

from dtmm.errors import BuildError

from .targets import Target, get_target

__all__ = [
    "Artifact",
    "RegionOverflowError",
    "build",
    "size",
    "cache_dir",
    "toolchain_available",
    "SUPPORT_DIR",
]

SUPPORT_DIR = Path(__file__).resolve().parent / "support"
_CM_SUPPORT = ("startup_cortex_m.S", "syscalls_cortex_m.c", "dtmm_platform_common.c")
_HOST_SUPPORT = ("dtmm_platform_host.c", "dtmm_platform_common.c")
_WARN = ("-Wall", "-Wextra", "-Wno-unused-parameter")
_ARTIFACT_KINDS = ("executable", "shared")
_SOURCE_SUFFIXES = (".c", ".s", ".S")

#: Flags of a host build under AddressSanitizer + UndefinedBehaviorSanitizer (any finding
#: aborts the program: nothing is only reported).
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer")


def sanitize_requested() -> bool:
    """True when ``$DTMM_SANITIZE`` is set (to anything but ``0``): host builds (the kernel
    library of :mod:`dtmm.runtime.kernels_host` and every :func:`build` for the host, so
    the generated models of ``verify --backend host``) then add :data:`SANITIZE_FLAGS`.
    Loading such a library into Python needs the ASan runtime preloaded
    (``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``); ``make test-sanitize`` does it."""
    return os.environ.get("DTMM_SANITIZE", "0") not in ("", "0")


def tool_env() -> dict[str, str]:
    """The environment for compilers and emulators: this one without ``LD_PRELOAD`` (the ASan
    runtime preloaded for a sanitized test run would only slow gcc down)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


def check_sanitizer_runtime() -> None:
    """Raise BuildError if sanitized host libraries cannot be loaded into this process."""
    if sanitize_requested() and "libasan" not in os.environ.get("LD_PRELOAD", ""):
        raise BuildError("DTMM_SANITIZE is set but the ASan runtime is not preloaded: run with "
                         "LD_PRELOAD=$(gcc -print-file-name=libasan.so) (see `make test-sanitize`)")


class RegionOverflowError(BuildError):
    """Code or data do not fit a memory region of the target.

    Attributes: ``target`` (name), ``region`` (linker region name, e.g. ``"DTCM"``),
    ``overflow_bytes``; ``overflows`` lists every (region, bytes) ld reported.
    """

    def __init__(self, target: str, overflows: list[tuple[str, int]], regions: Mapping[str, str]):
        self.target = target
        self.overflows = overflows
        self.region, self.overflow_bytes = overflows[0]
        parts = [f"region {name} ({regions.get(name, '?')}) overflowed by {n} bytes" for name, n in overflows]
        super().__init__(f"firmware does not fit {target}: " + "; ".join(parts))


@dataclass(frozen=True)
class Artifact:
    """A built program: an ELF (Cortex-M), an executable or a shared library (host).

    ``markers`` maps ``"start"``/``"stop"`` to the addresses of
    ``dtmm_bench_start``/``dtmm_bench_stop`` when the firmware calls them.
    """

    path: Path
    target: Target
    kind: str  # "elf", "executable" or "shared"
    key: str
    markers: Mapping[str, int] = field(default_factory=dict)

    @property
    def build_dir(self) -> Path:
        return self.path.parent


def cache_dir() -> Path:
    """Root of dtmm's build cache: ``$DTMM_CACHE_DIR`` or ``~/.cache/dtmm``."""
    root = os.environ.get("DTMM_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "dtmm"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} not found on PATH (install gcc-arm-none-eabi / qemu-system-arm / gcc)")
    return path


def toolchain_available(target: str | Target) -> str | None:
    """``None`` if everything ``target`` needs is installed, else the reason why not.

    >>> toolchain_available("host") is None
    True
    """
    t = get_target(target)
    needed = ["gcc"] if t.is_host else ["arm-none-eabi-gcc", "arm-none-eabi-nm", "arm-none-eabi-size",
                                         "qemu-system-arm", "gcc"]
    missing = [n for n in needed if shutil.which(n) is None]
    return f"missing tools for {t.name}: {', '.join(missing)}" if missing else None


@functools.lru_cache(maxsize=None)
def _tool_version(exe: str) -> str:
    proc = subprocess.run([_tool(exe), "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.splitlines()[0] if proc.stdout else exe


def _hash_files(h, paths: Iterable[Path]) -> None:
    for p in paths:
        h.update(str(p).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")


def _headers(include_dirs: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for d in include_dirs:
        if d.is_dir():
            out.extend(sorted(p for p in d.rglob("*") if p.suffix in (".h", ".inc", ".hpp") and p.is_file()))
    return out


def _linker_script(t: Target, stack_bytes: int, heap_min_bytes: int) -> str:
    code, ram, large = t.region_for("code"), t.region_for("ram"), t.region_for("large")
    assert code is not None and ram is not None
    tmpl = Template((SUPPORT_DIR / "cortex_m.ld.in").read_text())
    return tmpl.substitute(
        memory="\n".join(r.linker_line() for r in t.regions),
        stack_size=f"0x{stack_bytes:X}",
        heap_min=f"0x{heap_min_bytes:X}",
        guard_size="0x400" if t.stack_guard == "mpu" else "0",
        code_region=code.name,
        ram_region=ram.name,
        large_const_region=(large or code).name,
        large_bss_region=(large or ram).name,
    )


_OVERFLOW_RE = re.compile(r"region [`']?([A-Za-z0-9_]+)'? overflowed by (\d+) bytes")


def _fail(t: Target, what: str, proc: subprocess.CompletedProcess) -> BuildError:
    text = (proc.stderr or "") + (proc.stdout or "")
    overflows = [(m.group(1), int(m.group(2))) for m in _OVERFLOW_RE.finditer(text)]
    if overflows:
        regions = {r.name: f"{r.size // 1024} KiB at 0x{r.origin:08X}, {r.role}"
                           + (f": {r.description}" if t.board and r.description else "")
                   for r in t.regions}
        seen: dict[str, int] = {}
        for name, n in overflows:
            seen[name] = max(n, seen.get(name, 0))
        return RegionOverflowError(t.display_name, list(seen.items()), regions)
    lines = text.strip().splitlines()
    tail = "\n".join(lines[-40:])
    return BuildError(f"{what} failed for target {t.name} (exit {proc.returncode}):\n{tail}")


def _read_markers(elf: Path) -> dict[str, int]:
    proc = subprocess.run([_tool("arm-none-eabi-nm"), str(elf)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"arm-none-eabi-nm failed on {elf}: {proc.stderr.strip()}")
    out: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in ("dtmm_bench_start", "dtmm_bench_stop"):
            out[parts[2].rsplit("_", 1)[1]] = int(parts[0], 16) & ~1
    return out


def build(
    target: str | Target,
    sources: Iterable[str | os.PathLike],
    *,
    include_dirs: Iterable[str | os.PathLike] = (),
    defines: Mapping[str, object] | None = None,
    opt: str = "-O2",
    out_dir: str | os.PathLike | None = None,
    simd: str = "auto",
    kind: str = "executable",
    stack_bytes: int = 16 * 1024,
    heap_min_bytes: int = 0,
    extra_cflags: Iterable[str] = (),
) -> Artifact:
    """Compile and link ``sources`` (C or assembly, one of them defining ``main``).

    The platform support code (startup, semihosting syscalls, ``dtmm_platform.h``)
    is added automatically and its directory is on the include path.  Targets:
    ``"host"``, ``"cortex-m4"``, ``"cortex-m7"``, ``"cortex-m55"``.

    ``defines`` become ``-DNAME=value`` (``None`` -> ``-DNAME``); the target's ISA
    macros (see :meth:`Target.isa_defines`, chosen by ``simd``) and
    ``DTMM_TARGET_HOST``/``DTMM_TARGET_CORTEX_M``/``DTMM_TARGET_NAME`` are added.
    ``kind="shared"`` builds a host shared library (no ``main`` needed).
    Results are cached under ``out_dir`` (default ``cache_dir()/"build"``) by a hash
    of every input (sources, headers in ``include_dirs``, flags, tool versions).

    Raises :class:`RegionOverflowError` (a :class:`BuildError`) naming the region
    when the firmware does not fit, :class:`BuildError` for any other failure.

    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "m.c").write_text('#include <stdio.h>\\nint main(void){puts("hi");return 3;}\\n')
    >>> art = build("host", [d / "m.c"], out_dir=d / "out")
    >>> art.kind, art.path.exists()
    ('executable', True)
    """
    t = get_target(target)
    if stack_bytes <= 0 or stack_bytes % 1024:
        raise BuildError(f"stack_bytes must be a positive multiple of 1024, got {stack_bytes}")
    if kind not in _ARTIFACT_KINDS:
        raise BuildError(f"kind must be one of {_ARTIFACT_KINDS}, got {kind!r}")
    if kind == "shared" and not t.is_host:
        raise BuildError(f"kind='shared' is only available for the host target, not {t.name}")
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise BuildError("build() needs at least one source file")
    for s in srcs:
        if not s.is_file():
            raise BuildError(f"source file not found: {s}")
        if s.suffix not in _SOURCE_SUFFIXES:
            raise BuildError(f"unsupported source {s.name} (expected {', '.join(_SOURCE_SUFFIXES)})")
    incs = [Path(d).resolve() for d in include_dirs]
    for d in incs:
        if not d.is_dir():
            raise BuildError(f"include directory not found: {d}")

    all_defines: dict[str, object] = {}
    if t.is_host:
        all_defines["DTMM_TARGET_HOST"] = 1
    else:
        all_defines["DTMM_TARGET_CORTEX_M"] = 1
    all_defines["DTMM_TARGET_NAME"] = f'"{t.name}"'
    all_defines.update(t.isa_defines(simd))
    all_defines.update(defines or {})
    dflags = [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in all_defines.items()]
    for k in all_defines:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise BuildError(f"invalid macro name {k!r}")

    support = [SUPPORT_DIR / n for n in (_HOST_SUPPORT if t.is_host else _CM_SUPPORT)]
    inc_flags = [f"-I{d}" for d in incs] + [f"-I{SUPPORT_DIR}"]
    cc = "gcc" if t.is_host else "arm-none-eabi-gcc"
    common = [opt, "-g", "-ffunction-sections", "-fdata-sections", *_WARN, *t.compile_flags(simd), *extra_cflags]
    if t.is_host and sanitize_requested():
        common += SANITIZE_FLAGS
    if t.is_host:
        ext = ".so" if kind == "shared" else ""
        artifact_kind = kind
        link = (["-shared", "-fPIC"] if kind == "shared" else []) + ["-lm"]
    else:
        ext = ".elf"
        artifact_kind = "elf"
        link = [
            "-nostartfiles",
            "--specs=nano.specs",
            "-Wl,--gc-sections",
            "-Wl,--no-warn-rwx-segments",
            "-Wl,-T,link.ld",
            "-Wl,-Map,firmware.map",
            "-lm",
        ]

    h = hashlib.sha256()
    h.update(repr((t.name, kind, simd, stack_bytes, heap_min_bytes, common, dflags, link)).encode())
    if t.board:                      # a board's region lengths: another linker script
        h.update(repr((t.board, [r.linker_line() for r in t.regions])).encode())
    h.update(_tool_version(cc).encode())
    _hash_files(h, srcs)
    _hash_files(h, _headers(incs))
    _hash_files(h, sorted(p for p in SUPPORT_DIR.iterdir() if p.is_file()))
    key = h.hexdigest()[:20]

    root = Path(out_dir) if out_dir is not None else cache_dir() / "build"
    final = root / f"{t.name}-{key}"
    name = ("firmware" if not t.is_host else ("libdtmm" if kind == "shared" else "program")) + ext
    if (final / name).is_file():
        markers = _read_markers(final / name) if t.is_cortex_m else {}
        return Artifact(final / name, t, artifact_kind, key, markers)

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{t.name}-{key}.tmp-", dir=root))
    try:
        if t.is_cortex_m:
            (tmp / "link.ld").write_text(_linker_script(t, stack_bytes, heap_min_bytes))
        cmd = [_tool(cc), *common, *dflags, *inc_flags, *map(str, srcs), *map(str, support), "-o", name, *link]
        (tmp / "build.cmd").write_text(" ".join(cmd) + "\n")
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False,
                              env=tool_env())
        (tmp / "build.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise _fail(t, "compile/link", proc)
        try:
            tmp.rename(final)
        except OSError:  # a concurrent build won the race; its result is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    markers = _read_markers(final / name) if t.is_cortex_m else {}
    return Artifact(final / name, t, artifact_kind, key, markers)


_FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".preinit_array",
                   ".init_array", ".fini_array", ".dtmm_large_const", ".data")
_RAM_SECTIONS = (".data", ".bss", ".dtmm_large_bss")


def size(artifact: Artifact) -> tuple[int, int]:
    """``(flash_bytes, ram_bytes)`` of a Cortex-M firmware, from ``arm-none-eabi-size -A``.

    flash = vectors + code + read-only data (including ``DTMM_LARGE_CONST``) + the
    .data load image; ram = .data + .bss (+ ``DTMM_LARGE_BSS``).  The reserved
    stack (``stack_bytes``) and heap are not included.

    >>> flash, ram = size(art)      # doctest: +SKIP
    """
    if not artifact.target.is_cortex_m:
        raise BuildError(f"size() needs a Cortex-M firmware, got a {artifact.target.name} {artifact.kind}")
    sections = section_sizes(artifact)
    flash = sum(sections.get(s, 0) for s in _FLASH_SECTIONS)
    ram = sum(sections.get(s, 0) for s in _RAM_SECTIONS)
    return flash, ram


def section_sizes(artifact: Artifact) -> dict[str, int]:
    """Size in bytes of every allocated section of a Cortex-M firmware."""
    proc = subprocess.run([_tool("arm-none-eabi-size"), "-A", str(artifact.path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"arm-none-eabi-size failed on {artifact.path}: {proc.stderr.strip()}")
    out: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            if int(parts[2]) != 0:  # allocated sections have an address; debug ones have 0
                out[parts[0]] = int(parts[1])
            elif parts[0] in (".vectors", ".text"):
                out[parts[0]] = int(parts[1])
    return out
