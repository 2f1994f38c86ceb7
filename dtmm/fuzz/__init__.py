"""Fuzzing dtmm's model reader, reference executor and generated C with damaged files.

* :mod:`dtmm.fuzz.mutate`: structure-aware mutations of ``.tflite`` files (every
  flatbuffer field dtmm reads) and byte-level ones;
* :mod:`dtmm.fuzz.harness`: runs each mutant through the reader and the reference
  executor, and every accepted one through the host C build under AddressSanitizer
  and UndefinedBehaviorSanitizer, and tallies the outcomes.

``scripts/fuzz_models.py`` runs it at scale and writes the outcome table into
BENCHMARKS.md; ``tests/test_untrusted.py`` runs a small version.
"""
