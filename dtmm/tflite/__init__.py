"""``.tflite`` export, import and a TFLite Micro runner for quantized dtmm graphs.

* :func:`dtmm.tflite.export.to_tflite_bytes` / :func:`dtmm.tflite.export.export_tflite`
* :func:`dtmm.tflite.reader.read_tflite`
* :func:`dtmm.tflite.tflm.run_tflm`
"""
