"""Versions recorded in every output, so a result can be traced to the stack that produced it."""

from __future__ import annotations

import importlib.metadata
import platform

import pruneofa

_PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "onnx", "onnxruntime", "openvino")


def package_versions() -> dict[str, str]:
    out = {"pruneofa": pruneofa.__version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
