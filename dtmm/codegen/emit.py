"""Emit stage of code generation: write a rendered C project, atomically.

:func:`project_files` assembles (in memory) every file of the self-contained C project
of a :class:`~dtmm.codegen.plan.ModelPlan`; :func:`write_project` stages every file, then renames them into place (a failure
never leaves a half-written project) and never touches a file the user put there; :func:`cached_project` keeps one copy per content
hash under ``cache_dir()/"models"`` for the verify backends.

Layout of a generated project::

    README.md             build, input / output formats, the C API, memory needed
    model.h  model.c      the model (constants, static arena, dtmm_model_invoke, ...)
    main.c                harness: stream the inputs of dtmm_input.bin, print each output
                          (DTMM_HEX lines) and, for a classifier, its class (DTMM_CLASS)
    Makefile              host: libdtmm_model.so + model_demo; Cortex-M: firmware.elf, make run
    kernels/              the dtmm_*.c kernels the model calls and their headers
    platform/             dtmm_platform.h and its support code (startup, semihosting,
                          link.ld for Cortex-M; the host implementation otherwise)

Example:
    >>> import tempfile, pathlib
    >>> from dtmm.runtime.synth import SynthGraph
    >>> from dtmm.codegen.plan import plan_model
    >>> sg = SynthGraph((4, 4, 2), seed=0); _ = sg.conv(3, 1)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "proj"
    >>> _ = write_project(plan_model(sg.finish(), "host"), out)
    >>> sorted(p.name for p in out.iterdir())
    ['.dtmm-manifest.json', 'Makefile', 'README.md', 'kernels', 'main.c', 'model.c', 'model.h', 'platform']
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dtmm.codegen import render
from dtmm.codegen.plan import ModelPlan
from dtmm.errors import BuildError, DtmmError

__all__ = ["project_files", "write_project", "cached_project", "build_defines", "emulation_defines", "CSRC_DIR"]

CSRC_DIR = Path(__file__).resolve().parent.parent / "csrc"
_STACK_BYTES = 16 * 1024


def build_defines(plan: ModelPlan) -> dict[str, object]:
    """The ``-D`` macros a standalone build of ``plan`` uses (as dtmm.codegen.platform does)."""
    t = plan.target_info
    d: dict[str, object] = {"DTMM_TARGET_HOST" if t.is_host else "DTMM_TARGET_CORTEX_M": 1,
                            "DTMM_TARGET_NAME": f"'\"{t.name}\"'"}
    d.update(t.isa_defines(plan.simd))
    d.update(emulation_defines(plan))
    return d


def emulation_defines(plan: ModelPlan) -> dict[str, object]:
    """``DTMM_EMULATE_MVE`` / ``DTMM_EMULATE_DSP`` for a host plan emulating that ISA path."""
    if plan.target_info.is_host and plan.arena.isa != "scalar":
        return {f"DTMM_EMULATE_{plan.arena.isa.upper()}": 1}
    return {}


def project_files(plan: ModelPlan) -> dict[str, bytes]:
    """Every file of the project, by relative path (rendered and copied), in memory."""
    from dtmm.codegen.platform import SUPPORT_DIR, toolchain

    t = plan.target_info
    files: dict[str, bytes] = {
        "README.md": render.render_readme(plan, stack_bytes=_STACK_BYTES).encode(),
        "model.h": render.render_model_h(plan).encode(),
        "model.c": render.render_model_c(plan).encode(),
        "main.c": render.render_harness(render.classifier_classes(plan)).encode(),
        "Makefile": render.render_makefile(plan, target_flags=t.compile_flags(plan.simd),
                                           defines=build_defines(plan),
                                           qemu_machine=t.qemu_machine).encode(),
    }
    for name in plan.kernel_sources + plan.kernel_headers:
        src = CSRC_DIR / name
        if not src.is_file():
            raise BuildError(f"kernel file {name} is missing from {CSRC_DIR}")
        files[f"kernels/{name}"] = src.read_bytes()
    support = (["dtmm_platform.h", "dtmm_platform_common.c"]
               + (["dtmm_platform_host.c"] if t.is_host
                  else ["startup_cortex_m.S", "syscalls_cortex_m.c"]))
    for name in support:
        files[f"platform/{name}"] = (SUPPORT_DIR / name).read_bytes()
    if t.is_cortex_m:
        # The platform layer's own linker script for this target (same as build() uses).
        files["platform/link.ld"] = toolchain._linker_script(t, _STACK_BYTES, 0).encode()
    return files


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name] + b"\0")
    return h.hexdigest()[:20]


#: The export group of the output manifest (see :func:`dtmm.util.files.write_outputs`).
EXPORT_GROUP = "export"


def write_project(plan: ModelPlan, out_dir: str | os.PathLike, *, files: dict[str, bytes] | None = None,
                  overwrite: bool = True) -> Path:
    """Write the project of ``plan`` to ``out_dir``; return it as a :class:`~pathlib.Path`.

    Files go through :func:`dtmm.util.files.write_outputs`: all staged, then renamed into
    place, recorded in the folder's manifest (``.dtmm-manifest.json``). A re-export into
    an earlier export folder replaces dtmm's own files and removes those it no longer
    needs; files the user added (``app.c``, ``dtmm_input.bin``) are left alone, and a
    user's file in the way of a project file (or a project file the user edited) makes it
    refuse with :class:`~dtmm.errors.OutputPathError`, naming the file, before anything
    is written. ``overwrite=False`` refuses any existing ``out_dir``.
    """
    from dtmm.util.files import write_outputs

    files = dict(project_files(plan) if files is None else files)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BuildError(f"{out} exists")
    write_outputs(out, files, group=EXPORT_GROUP)
    return out


def cached_project(plan: ModelPlan) -> Path:
    """The project of ``plan`` under ``cache_dir()/"models"/<content hash>`` (written once).

    A fixed path per content keeps :func:`dtmm.codegen.platform.build`'s cache effective.
    """
    from dtmm.codegen.platform import cache_dir

    files = project_files(plan)
    out = cache_dir() / "models" / f"{plan.target}-{_digest(files)}"
    if (out / "model.c").is_file():
        return out
    try:
        return write_project(plan, out, files=files)
    except (OSError, DtmmError):
        if (out / "model.c").is_file():          # a concurrent writer won; same content
            return out
        raise
