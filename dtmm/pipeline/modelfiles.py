"""Reading a user's ``.tflite`` file: errors name the file and say what was expected."""
from __future__ import annotations

import os
from pathlib import Path

from dtmm.errors import ModelFileError


def read_model_file(model: str) -> bytes:
    """The bytes of the ``.tflite`` file ``model``, or a ModelFileError naming it and saying
    what is wrong (missing, a folder, unreadable)."""
    path = Path(os.path.expanduser(str(model)))
    if path.is_dir():
        raise ModelFileError(f"{model}: is a folder; expected an int8 .tflite file written by dtmm")
    if not path.exists():
        raise ModelFileError(f"{model}: no such file; expected an int8 .tflite file written by dtmm")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{model}: cannot read it ({e.strerror or e}); expected an int8 "
                             f".tflite file") from None



def read_model(model: str):
    """:func:`read_model_file` parsed by :func:`dtmm.tflite.reader.read_tflite` (every field
    validated); errors name the file."""
    from dtmm.tflite.reader import read_tflite

    data = read_model_file(model)
    try:
        return read_tflite(data), data
    except ModelFileError as e:
        raise ModelFileError(f"{model}: {e}") from None

