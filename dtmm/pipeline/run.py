"""A resumable pipeline run: its output folder, the state kept after each step, progress lines.

A run owns one output folder. After each completed step, the step's result (JSON) and
its artifacts (checkpoints, model files) are written into ``DIR/.dtmm-state/`` through
:func:`dtmm.util.files.write_outputs` (atomic, manifest-recorded), so an interrupted run
(Ctrl-C, kill, a crash) resumes from its last completed step with ``resume=True``; a
step that was interrupted simply runs again. The run's inputs are fingerprinted: a
resume with other inputs is refused, naming what changed.

The folder must be new, empty, or one this kind of run wrote before (every file in it
listed in dtmm's manifest); a folder with a user's files is refused before any work.

Every step prints one line when it starts and one summary line when it ends, with its
elapsed time, whether or not output goes to a terminal; ``quiet`` silences the start lines
and the progress of long loops inside a step (bars, plain lines), not the summary lines.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dtmm.errors import DtmmError, OutputPathError
from dtmm.train.progress import Reporter

__all__ = ["Run", "STATE_DIR"]

STATE_DIR = ".dtmm-state"


class Run:
    """One pipeline run in ``out`` (see the module docstring)."""

    def __init__(self, out, *, kind: str, inputs: dict, resume: bool = False, quiet: bool = False,
                 steps: int | None = None, stream=None):
        from dtmm.util.files import check_output_path, read_manifest

        self.out = check_output_path(out)
        self.kind = kind
        self.quiet = quiet
        self.stream = stream or sys.stderr
        #: the steps' ``progress`` callback: lines unless quiet, a bar for long loops on a terminal
        self.say = Reporter(quiet=quiet, stream=self.stream)
        self.t0 = time.time()
        self.n_steps = steps
        self.k = 0
        self.inputs = json.loads(json.dumps(inputs, sort_keys=True, default=str))
        if self.out.is_dir():
            manifest = read_manifest(self.out)
            foreign = sorted(str(p.relative_to(self.out)) for p in self.out.rglob("*")
                             if p.is_file() and p.name != ".dtmm-manifest.json"
                             and str(p.relative_to(self.out)) not in manifest)
            if foreign:
                raise OutputPathError(f"--out {self.out}: holds files dtmm did not write "
                                      f"({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); "
                                      f"choose a new or empty folder")
        prev = self.load("inputs")
        if prev is not None and not resume:
            raise OutputPathError(f"--out {self.out}: holds an earlier {prev.get('kind', kind)} run; "
                                  f"resume it with --resume or choose another folder")
        if prev is not None and resume:
            if prev.get("kind") != kind:
                raise DtmmError(f"--resume: {self.out} holds a {prev.get('kind')} run, not {kind}")
            old = prev.get("inputs", {})
            diff = sorted(k for k in set(old) | set(self.inputs) if old.get(k) != self.inputs.get(k))
            if diff:
                raise DtmmError(f"--resume: the inputs differ from the interrupted run's "
                                f"({', '.join(diff)}); rerun with the same arguments or another --out")
        self.resumed = prev is not None and resume
        if prev is None:
            self.save("inputs", {"kind": kind, "inputs": self.inputs})

    # -- state
    def _path(self, name: str) -> Path:
        return self.out / STATE_DIR / name

    def load(self, name: str) -> dict | None:
        p = self._path(f"{name}.json")
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise DtmmError(f"{p}: the saved state of step {name!r} is damaged ({e}); remove "
                            f"--out and start again") from None

    def save(self, name: str, obj: dict, artifacts: dict[str, bytes] | None = None) -> None:
        from dtmm.util.files import write_outputs

        files = {f"{STATE_DIR}/{name}.json": (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()}
        for rel, data in (artifacts or {}).items():
            files[f"{STATE_DIR}/{rel}"] = data
        # artifacts first, the step's JSON (its "done" mark) in the same atomic batch
        write_outputs(self.out, files)

    def artifact(self, rel: str) -> Path:
        return self._path(rel)

    # -- steps
    def step(self, name: str, title: str, fn):
        """Run ``fn() -> (result dict, artifacts dict | None)`` unless step ``name`` is done."""
        self.k += 1
        tag = f"[{self.k}/{self.n_steps}]" if self.n_steps else f"[{self.k}]"
        done = self.load(name)
        if done is not None:
            self.summary(f"{tag} {title}: done in an earlier run (resumed)")
            return done
        self.say(f"{tag} {title} ...")
        t = time.time()
        res, arts = fn()
        res = dict(res)
        res["seconds"] = round(time.time() - t, 1)
        self.save(name, res, arts)
        self.summary(f"{tag} {title}: {res.get('summary', 'done')} ({res['seconds']:.0f} s, "
                      f"{time.time() - self.t0:.0f} s in all)")
        return res

    def summary(self, line: str) -> None:
        """A step's one-line summary: printed with or without ``quiet``."""
        print(line, file=self.stream, flush=True)
