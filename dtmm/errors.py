"""Exception types. Every error a user can cause derives from :class:`DtmmError`.

The CLI prints ``error: <message>`` for these and exits with status 2; any other
exception is a bug in dtmm.
"""


class DtmmError(Exception):
    """Base class of all errors dtmm reports to users."""


class GraphError(DtmmError):
    """A model or IR graph that dtmm cannot represent (names the node and op)."""


class UnsupportedOpError(GraphError):
    """An operation the capture does not support."""


class QuantizationError(DtmmError):
    """Quantization could not be done (e.g. no calibration data)."""


class DataError(DtmmError):
    """A dataset that cannot be loaded (unknown name, empty, malformed files)."""


class ModelFileError(DtmmError):
    """A ``.tflite`` / checkpoint file that is malformed, truncated or of another model."""


class FormatError(DtmmError):
    """A compressed storage format that is invalid (names the field and offset)."""


class BuildError(DtmmError):
    """A C build or emulator run that failed."""


class OutputPathError(DtmmError):
    """An output path that cannot be used: an existing non-directory, an unwritable or
    uncreatable folder, or a file there that dtmm did not write (names the path)."""
