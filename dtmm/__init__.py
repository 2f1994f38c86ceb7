"""dtmm: deploy pruned int8 TinyML CNNs on Cortex-M microcontrollers.

Pipeline: capture a PyTorch model into a channel-last IR (:mod:`dtmm.graph`),
quantize it to int8 the TFLite way (:mod:`dtmm.quant`), run it with the NumPy
integer reference (:mod:`dtmm.runtime`), export ``.tflite`` (:mod:`dtmm.tflite`).
"""

__version__ = "0.1.0"
