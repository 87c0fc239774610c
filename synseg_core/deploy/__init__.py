"""Deployment: ONNX export (fp32, fp16, int8) and the runtime backends (PyTorch, ONNX Runtime, TensorRT)."""
