"""dtmm: deploy pruned int8 TinyML CNNs on Cortex-M microcontrollers (the DTMM paper).

Pipeline, one package per stage:

* :mod:`dtmm.graph` - torch.fx capture into a channel-last IR (BN folded, ReLU fused);
* :mod:`dtmm.quant` - TFLite-exact int8 quantization, calibration, fake-quant for QAT whose
  learned ranges reach the int8 export;
* :mod:`dtmm.prune` - filterlet / filter / element / pattern pruning, importance, masks,
  dead-channel removal from the IR and from the torch model (:mod:`dtmm.prune.surgery`);
  :mod:`dtmm.oneshot` ties them into one-shot pruning;
* :mod:`dtmm.formats` - FWCS, CSR, pattern, dense and TFLM-bitmask storage with exact bytes;
* :mod:`dtmm.tflite` - ``.tflite`` export / reading (compressed layers as custom ops), TFLM runner;
* :mod:`dtmm.runtime` - the NumPy integer reference executor (the definition of correct);
* :mod:`dtmm.codegen` - C code generation, arena planning, host and Cortex-M builds under QEMU;
* :mod:`dtmm.data`, :mod:`dtmm.zoo`, :mod:`dtmm.train` - datasets, models, a small trainer and
  fine-tuning under masks (:mod:`dtmm.train.finetune`: distillation, gradual pruning, a
  callback contract for a user's own or distributed trainer).

The ``dtmm`` command (:mod:`dtmm.cli`) drives all of it.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # dtmm.compress without importing torch at ``import dtmm`` (the CLI's --help stays fast)
    if name == "compress":
        from dtmm.pipeline.api import compress

        return compress
    raise AttributeError(f"module 'dtmm' has no attribute {name!r}")
