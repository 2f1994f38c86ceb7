"""Small helpers every stage may import (no torch, no numpy-heavy imports, no cycles).

* :mod:`dtmm.util.files`: atomic writes that respect the umask, output-path checks,
  and the output-folder manifest that keeps dtmm from touching files it did not write;
* :mod:`dtmm.util.text`: the one sanitizer for file-provided names shown in generated
  code, and the terminal-safe form of messages.
"""
