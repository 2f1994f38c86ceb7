"""The TFLite flatbuffer schema's generated Python (shipped inside the tflite-micro wheel)."""
from __future__ import annotations

from dtmm.errors import DtmmError

try:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
except ImportError as e:  # pragma: no cover - depends on the environment
    raise DtmmError("dtmm.tflite needs the 'tflite-micro' package (pip install tflite-micro)") from e

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
METADATA_NAME = "dtmm"

BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TENSOR_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

__all__ = ["schema", "FILE_IDENTIFIER", "SCHEMA_VERSION", "METADATA_NAME", "BUILTIN_NAMES",
           "TENSOR_TYPE_NAMES"]
