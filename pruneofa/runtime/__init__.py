"""The torch-free runtime: inference engines (onnxruntime, OpenVINO) and predict. Imports no torch, no transformers."""
