"""ONNX export, TensorRT engine builds and the runtimes ``generate`` uses (installed as
``t2vkit.exporters``; filled by the export issue)."""
