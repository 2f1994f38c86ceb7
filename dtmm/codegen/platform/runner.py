"""Run a built program on the host or on QEMU, with instruction counting.

Counting (Cortex-M only) uses a small QEMU TCG plugin (``support/insn_count_plugin.c``)
compiled with the host gcc at first use and cached under ``cache_dir()/"qemu-plugin"``
keyed by its source hash.  Each ``dtmm_bench_start()`` ... ``dtmm_bench_stop()`` pair in
the firmware yields one entry of :attr:`RunResult.instructions`: the guest instructions
executed after ``dtmm_bench_start`` returns, up to and including the call instruction
that enters ``dtmm_bench_stop`` (an empty region therefore counts 1).  These are
**executed instructions, not cycles**: QEMU does not model pipelines or memory timing.
Counts are exact and repeat run to run.

>>> from dtmm.codegen.platform import build, run             # doctest: +SKIP
>>> res = run(build("cortex-m55", ["bench.c"]))              # doctest: +SKIP
>>> res.exit_code, res.instructions                          # doctest: +SKIP
(0, [1234, 5678])
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from dtmm.errors import BuildError

from .targets import get_target
from .toolchain import SUPPORT_DIR, Artifact, _tool, cache_dir

__all__ = ["RunResult", "RunError", "run", "plugin_path", "FAULT_EXIT_CODE", "qemu_command", "describe_fault",
           "INSTRUCTION_CLASSES", "CYCLE_MODELS"]

#: Instruction classes of :attr:`RunResult.instruction_classes` (the counting plugin's
#: decode of each executed Thumb-2 instruction).
INSTRUCTION_CLASSES = ("scalar_alu", "load_store", "branch", "mve_load_store", "mve_mac",
                       "mve_other")
#: Target -> the plugin's cycle model (``model=`` argument).
CYCLE_MODELS = {"cortex-m4": "m4", "cortex-m7": "m7", "cortex-m55": "m55"}

#: Exit code of the firmware's fault handler (``DTMM_FAULT_EXIT_CODE`` in dtmm_platform.h).
FAULT_EXIT_CODE = 250
_FAULT_MARK = "DTMM_FAULT "
_plugin_lock = threading.Lock()


class RunError(BuildError):
    """A program that faulted, hung past its timeout, or could not be started.

    ``stdout`` holds whatever the program printed before it failed.
    """

    def __init__(self, message: str, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run`.

    ``instructions``: one executed-instruction count per start/stop marker pair
    (Cortex-M; ``[]`` when the firmware has none), ``None`` on the host.
    ``total_instructions``: all guest instructions of the run, startup and exit included
    (Cortex-M) or ``None`` (host).
    ``instruction_classes``: per region, its instructions by class (``INSTRUCTION_CLASSES``
    order), ``None`` on the host. ``estimated_cycles``: per region, the plugin's cycle
    MODEL of the target core (a per-block static schedule, see dtmm.bench.cycles) --
    an estimate, never a measurement; ``None`` on the host.
    """

    exit_code: int
    stdout: str
    instructions: list[int] | None
    stderr: str = ""
    total_instructions: int | None = None
    instruction_classes: list[tuple[int, ...]] | None = None
    estimated_cycles: list[int] | None = None


def plugin_path() -> Path:
    """Build (once) and return the instruction-counting QEMU plugin ``.so``."""
    src = SUPPORT_DIR / "insn_count_plugin.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out_dir = cache_dir() / "qemu-plugin"
    so = out_dir / f"insn_count-{digest}.so"
    if so.is_file():
        return so
    with _plugin_lock:
        if so.is_file():
            return so
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        proc = subprocess.run(
            [_tool("gcc"), "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", str(src), "-o", tmp],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            os.unlink(tmp)
            raise BuildError(f"building the QEMU counting plugin failed:\n{proc.stderr.strip()}")
        os.replace(tmp, so)
    return so


def qemu_command(artifact: Artifact, counts_file: Path | None = None) -> list[str]:
    """The ``qemu-system-arm`` command line :func:`run` uses (handy for debugging)."""
    t = artifact.target
    cmd = [
        _tool("qemu-system-arm"),
        "-M", str(t.qemu_machine),
        "-display", "none",
        "-monitor", "none",
        "-serial", "null",
        "-semihosting-config", "enable=on,target=native",
        "-kernel", str(artifact.path),
    ]
    if counts_file is not None:
        args = [str(plugin_path())]
        if {"start", "stop"} <= set(artifact.markers):
            args += [f"start=0x{artifact.markers['start']:x}", f"stop=0x{artifact.markers['stop']:x}"]
        args.append(f"out={counts_file}")
        if t.name in CYCLE_MODELS:
            args.append(f"model={CYCLE_MODELS[t.name]}")
        cmd += ["-plugin", ",".join(args)]
    return cmd


def _parse_counts(path: Path, stderr: str):
    regions: list[int] = []
    classes: list[tuple[int, ...]] = []
    cycles: list[int] = []
    total = None
    text = path.read_text() if path.is_file() else ""
    if not text.startswith("dtmm-insn-count 1"):
        raise RunError(f"the QEMU instruction-counting plugin did not load:\n{_tail(stderr.strip())}", "", stderr)
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "region":
            regions.append(int(parts[1]))
        elif len(parts) == 2 + len(INSTRUCTION_CLASSES) and parts[0] == "classes":
            classes.append(tuple(int(v) for v in parts[1:1 + len(INSTRUCTION_CLASSES)]))
            cycles.append(int(parts[-1]))
        elif len(parts) == 2 and parts[0] == "total":
            total = int(parts[1])
        elif parts == ["unpaired_stop"]:
            raise RunError("dtmm_bench_stop() was called without a matching dtmm_bench_start()")
    if len(classes) != len(regions):
        raise RunError(f"the counting plugin wrote {len(regions)} regions but {len(classes)} class lines")
    return regions, total, classes, cycles


_CFSR_BITS = {
    0: "IACCVIOL (instruction fetch from a protected/no-execute address)",
    1: "DACCVIOL (data access violation: MPU, e.g. the stack guard)",
    3: "MUNSTKERR", 4: "MSTKERR (stacking hit the stack guard: stack overflow)", 5: "MLSPERR",
    8: "IBUSERR (instruction bus error)", 9: "PRECISERR (data bus error)", 10: "IMPRECISERR",
    11: "UNSTKERR", 12: "STKERR", 13: "LSPERR",
    16: "UNDEFINSTR (undefined instruction)", 17: "INVSTATE (Thumb bit clear / bad EPSR)",
    18: "INVPC (bad exception return)", 19: "NOCP (FPU/MVE not enabled or absent)",
    20: "STKOF (stack overflow, MSPLIM)", 24: "UNALIGNED", 25: "DIVBYZERO",
}


def describe_fault(line: str) -> str:
    """Decode the CFSR bits of a ``DTMM_FAULT`` line into words.

    >>> describe_fault("DTMM_FAULT HardFault exception=0x3 pc=0x1c0 cfsr=0x00010000 hfsr=0x40000000")
    'UNDEFINSTR (undefined instruction)'
    """
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    try:
        cfsr = int(fields.get("cfsr", "0"), 16)
    except ValueError:
        return ""
    return ", ".join(text for bit, text in _CFSR_BITS.items() if cfsr >> bit & 1)


def _tail(text: str, n: int = 2000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def run(artifact: Artifact, *, timeout_s: float = 60, input_bytes: bytes | None = None) -> RunResult:
    """Run ``artifact`` (host executable, or Cortex-M ELF under QEMU) and collect its output.

    ``input_bytes`` is readable by the program through ``dtmm_read_input()``.  The exit
    code of ``main``/``exit()`` is returned as ``exit_code`` (Cortex-M: via semihosting
    SYS_EXIT_EXTENDED).  A fault (firmware fault handler, or a host crash by signal)
    or a hang past ``timeout_s`` raises :class:`RunError`; no result is returned then.
    Exit codes pass through the OS, so only their low 8 bits survive (``exit(-1)`` -> 255);
    250 is reserved for the fault handler.  The program runs in a fresh temporary
    working directory.

    Counting: every ``dtmm_bench_start()`` ... ``dtmm_bench_stop()`` pair appends one
    count to ``instructions``; a second start before a stop restarts the region, a
    start never stopped is dropped, a stop without a start raises :class:`RunError`.

    >>> res = run(art, timeout_s=10)          # doctest: +SKIP
    >>> res.exit_code, res.stdout             # doctest: +SKIP
    (0, 'checksum 1234\\n')
    """
    t = get_target(artifact.target)
    if artifact.kind == "shared":
        raise RunError(f"{artifact.path.name} is a shared library; load it with ctypes instead of run()")
    with tempfile.TemporaryDirectory(prefix="dtmm-run-") as wd:
        work = Path(wd)
        if input_bytes is not None:
            (work / "dtmm_input.bin").write_bytes(bytes(input_bytes))
        counts_file = work / "counts.txt"
        if t.is_host:
            cmd = [str(artifact.path)]
        else:
            cmd = qemu_command(artifact, counts_file)
        try:
            proc = subprocess.Popen(
                cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise RunError(f"cannot start {cmd[0]}: {e}") from e
        try:
            out_b, err_b = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out_b, err_b = proc.communicate()
            out = out_b.decode(errors="replace")
            where = "QEMU" if t.is_cortex_m else "the program"
            raise RunError(
                f"{artifact.path.name} on {t.name} did not finish within {timeout_s} s "
                f"(hang or infinite loop?); killed {where}. Output so far:\n{_tail(out)}",
                out, err_b.decode(errors="replace"),
            ) from None
        out = out_b.decode(errors="replace")
        err = err_b.decode(errors="replace")
        code = proc.returncode
        if t.is_host:
            if code < 0:
                try:
                    sig = signal.Signals(-code).name
                except ValueError:
                    sig = str(-code)
                raise RunError(f"{artifact.path.name} on host crashed with signal {sig}. Output:\n{_tail(out)}",
                               out, err)
            return RunResult(code, out, None, err, None)
        if _FAULT_MARK in out or code == FAULT_EXIT_CODE:
            line = next((ln for ln in out.splitlines() if ln.startswith(_FAULT_MARK)), "")
            reason = describe_fault(line)
            before = out.split(_FAULT_MARK, 1)[0].rstrip()
            raise RunError(
                f"firmware {artifact.path.name} faulted on {t.name}: {line.strip() or f'exit code {code}'}"
                + (f"\ncause: {reason}" if reason else "")
                + f"\n(look up pc with: arm-none-eabi-addr2line -e {artifact.path} <pc>)"
                + (f"\noutput before the fault:\n{_tail(before)}" if before else ""),
                out, err,
            )
        qemu_errors = [ln for ln in err.splitlines()
                       if ln.startswith("qemu-system-arm:") and "warning" not in ln.lower()]
        if code != 0 and qemu_errors and not out:
            raise RunError(f"QEMU failed on {t.name} (exit {code}): {_tail(err.strip())}", out, err)
        regions, total, classes, cycles = _parse_counts(counts_file, err)
        return RunResult(code, out, regions, err, total, classes, cycles)
