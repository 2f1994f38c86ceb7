"""Checkpoints: weights plus everything needed to rebuild the model.

A checkpoint is a ``torch.save`` file of a plain dict (tensors, strings,
numbers, lists, dicts only), read back with ``torch.load(weights_only=True)``
so loading a file never runs code from it. Writes are atomic: the file is
written under a temporary name in the same directory, fsynced, then moved
over the target with :func:`os.replace`, so a crash never leaves a
half-written checkpoint under the real name.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dtmm.errors import InvalidArgument, InvalidType, ModelFileError

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointMeta", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "dtmm-checkpoint"
CHECKPOINT_VERSION = 1
_MAX_LISTED = 5
_MAX_INPUT_DIM = 4096        # sanity bounds on a checkpoint's header (it is untrusted input)
_MAX_CLASSES = 100_000


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a checkpoint records besides the weights."""

    model_name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    dtmm_version: str = ""
    format_version: int = CHECKPOINT_VERSION


def _check_plain(value: Any, where: str) -> None:
    """Only types that ``torch.load(weights_only=True)`` reads back may be stored."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise InvalidType(f"{where}: dict keys must be str or int, got {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise InvalidType(f"{where}: cannot store a {type(value).__name__} in a checkpoint "
                    "(use str, int, float, bool, None, tensors, lists and dicts)")


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    model_name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    dataset: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write ``model``'s weights and how to rebuild it to ``path``.

    ``model_name`` should be a :data:`dtmm.zoo.MODEL_NAMES` entry so that
    :func:`load_checkpoint` can rebuild the model by itself; other names work
    when the loader passes ``model=``. ``extra`` is a dict of plain values
    (str/int/float/bool/None/tensors/lists/dicts), e.g. accuracy or pruning
    ratios. Returns the path written.

    Example:
        >>> import tempfile
        >>> from dtmm.zoo import build_model
        >>> m = build_model("resnet8", (1, 8, 8), 10, seed=0)
        >>> p = save_checkpoint(tempfile.mkdtemp() + "/r8.pt", m, model_name="resnet8",
        ...                     input_shape=(1, 8, 8), num_classes=10, dataset="digits")
        >>> p.name
        'r8.pt'
    """
    from dtmm import __version__

    extra = dict(extra or {})
    _check_plain(extra, "extra")
    if dataset is not None and not isinstance(dataset, str):
        raise InvalidType(f"dataset must be a str or None, got {type(dataset).__name__}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise InvalidArgument(f"input_shape must be (C, H, W), got {input_shape!r}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "dtmm_version": __version__,
        "model_name": str(model_name),
        "input_shape": list(shape),
        "num_classes": int(num_classes),
        "dataset": dataset,
        "extra": extra,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    target = Path(os.path.expanduser(os.fspath(path)))
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL + mode 0o666 lets the umask pick the final permissions.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        raise ModelFileError(f"cannot write checkpoint {target}: {e}") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _listing(items) -> str:
    items = list(items)
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return shown + more


def _check_state(path: Path, name: str, model: nn.Module, state: dict) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {_listing(wrong)}")
        raise ModelFileError(f"{path}: weights do not fit model {name!r}; " + "; ".join(parts))


_EXPECTED = ("expected a dtmm checkpoint (`dtmm train` writes one; for your own model use "
             "dtmm.train.save_checkpoint)")


def _load_failure(p: Path, e: Exception) -> str:
    """What a failed ``torch.load`` of ``p`` means, in words (no torch text echoed raw)."""
    import pickle
    import zipfile

    from dtmm.util.text import terminal_safe

    text = terminal_safe(str(e)).strip()
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":
        return f"{p}: not a torch.save file (it starts with bytes {head!r}); {_EXPECTED}"
    if isinstance(e, pickle.UnpicklingError) and "weights only load failed" in text.lower():
        return (f"{p}: a torch.save file holding Python objects (such as a whole nn.Module saved "
                f"with torch.save(model)), which dtmm does not unpickle because that would run "
                f"code from the file; {_EXPECTED}")
    if isinstance(e, (zipfile.BadZipFile, EOFError, RuntimeError)):
        return f"{p}: a truncated or corrupt torch.save file; {_EXPECTED}"
    first = text.splitlines()[0][:160] if text else ""
    return f"{p}: cannot read this torch.save file ({type(e).__name__}: {first}); {_EXPECTED}"


def _read_meta(path: Path, raw: Any) -> CheckpointMeta:
    if isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ModelFileError(f"{path}: a plain state_dict (tensors only), not a dtmm checkpoint; "
                             f"{_EXPECTED}")
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not a dtmm checkpoint (no '{CHECKPOINT_FORMAT}' header); "
                             f"{_EXPECTED}")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise ModelFileError(f"{path}: checkpoint format version {version!r} is newer than "
                             f"this dtmm understands ({CHECKPOINT_VERSION})")
    try:
        shape = tuple(int(v) for v in raw["input_shape"])
        meta = CheckpointMeta(
            model_name=str(raw["model_name"]),
            input_shape=shape,  # type: ignore[arg-type]
            num_classes=int(raw["num_classes"]),
            dataset=raw.get("dataset"),
            extra=dict(raw.get("extra") or {}),
            dtmm_version=str(raw.get("dtmm_version", "")),
            format_version=version,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: checkpoint header is incomplete or malformed ({e!r})") from None
    if len(meta.input_shape) != 3 or not all(1 <= v <= _MAX_INPUT_DIM for v in meta.input_shape):
        raise ModelFileError(f"{path}: input_shape {meta.input_shape} is not (C, H, W) with sizes "
                             f"in [1, {_MAX_INPUT_DIM}]")
    if not 1 <= meta.num_classes <= _MAX_CLASSES:
        raise ModelFileError(f"{path}: num_classes {meta.num_classes} is not in [1, {_MAX_CLASSES}]")
    if not isinstance(raw.get("state_dict"), dict) or not all(
        isinstance(v, torch.Tensor) for v in raw["state_dict"].values()
    ):
        raise ModelFileError(f"{path}: checkpoint has no valid state_dict")
    return meta


def load_checkpoint(
    path: str | os.PathLike,
    expected_model: str | None = None,
    *,
    model: nn.Module | None = None,
) -> tuple[nn.Module, CheckpointMeta]:
    """Read a checkpoint written by :func:`save_checkpoint`; return ``(model, meta)``.

    Without ``model`` the model is rebuilt with
    ``dtmm.zoo.build_model(meta.model_name, meta.input_shape, meta.num_classes)``;
    with ``model`` the weights are loaded into that module instead (for models
    outside the zoo). The returned model is in eval mode.

    Raises :class:`~dtmm.errors.ModelFileError` when the file is missing,
    truncated or corrupt, is not a dtmm checkpoint, was saved for another
    model than ``expected_model``, or holds weights that do not fit the model
    (the message names the missing/unexpected keys and mismatched shapes).

    Example:
        >>> import tempfile
        >>> from dtmm.zoo import build_model
        >>> p = tempfile.mkdtemp() + "/m.pt"
        >>> _ = save_checkpoint(p, build_model("dscnn", (1, 8, 8), 10), model_name="dscnn",
        ...                     input_shape=(1, 8, 8), num_classes=10)
        >>> model, meta = load_checkpoint(p, expected_model="dscnn")
        >>> meta.model_name, meta.input_shape, meta.num_classes
        ('dscnn', (1, 8, 8), 10)
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise ModelFileError(f"checkpoint not found: {p}")
    if not p.is_file():
        raise ModelFileError(f"{p}: is a folder, not a file; {_EXPECTED}")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/corrupt files
        raise ModelFileError(_load_failure(p, e)) from None
    meta = _read_meta(p, raw)
    if expected_model is not None and meta.model_name != expected_model:
        raise ModelFileError(
            f"{p} is a checkpoint of model {meta.model_name!r}, expected {expected_model!r}"
        )
    if model is None:
        from dtmm.zoo import MODEL_NAMES, ZooError, build_model

        try:
            model = build_model(meta.model_name, meta.input_shape, meta.num_classes)
        except ZooError as e:
            raise ModelFileError(
                f"{p}: cannot rebuild model {meta.model_name!r} ({e}); zoo models are "
                f"{', '.join(MODEL_NAMES)}: pass model= to load into your own module "
                f"(on the command line: --model path/to/file.py:factory)"
            ) from e
    state = raw["state_dict"]
    _check_state(p, meta.model_name, model, state)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta
