"""pruneofa: Prune Once For All fine-tuning, sparse-int8 export and benchmarking.

The public API is one verb per step and its config (see `pruneofa.api`):

    train(TrainConfig)                  -> TrainResult    one stage: teacher, stage 1 or stage 2
    sparsify(model, SparsifyConfig)     -> report         a sparse pre-trained starting point
    export_model(folder, ExportConfig)  -> manifest       ONNX QDQ int8 + OpenVINO IR, verified
    bundle(export, BundleConfig)        -> bundle.json    one .tar.gz to ship (predict/eval take it)
    evaluate(folder, EvalConfig)        -> metrics        torch, onnxruntime or OpenVINO on the dev set
    benchmark(sparse, dense, BenchConfig) -> bench doc    engines timed side by side
    gate(GateConfig)                    -> outcomes       results vs thresholds
    run_pipeline(recipe, output_dir)    -> state          all of it from one recipe
    Predictor(export_folder)            torch-free inference

Names are resolved on first use, so `import pruneofa` stays cheap and imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_PUBLIC = {
    "train": "pruneofa.api",
    "sparsify": "pruneofa.api",
    "export_model": "pruneofa.api",
    "bundle": "pruneofa.api",
    "BundleConfig": "pruneofa.export.bundle",
    "evaluate": "pruneofa.api",
    "benchmark": "pruneofa.api",
    "gate": "pruneofa.api",
    "run_pipeline": "pruneofa.api",
    "TrainConfig": "pruneofa.training.config",
    "TrainResult": "pruneofa.training.stage",
    "SparsifyConfig": "pruneofa.compress.sparsify",
    "GradualConfig": "pruneofa.compress.prune_once",
    "ExportConfig": "pruneofa.export.exporter",
    "EvalConfig": "pruneofa.scoring",
    "BenchConfig": "pruneofa.bench.run",
    "GateConfig": "pruneofa.gates",
    "Recipe": "pruneofa.pipeline.recipe",
    "load_recipe": "pruneofa.pipeline.recipe",
    "Predictor": "pruneofa.runtime.predict",
    "PruneofaError": "pruneofa.core.errors",
}

__all__ = [
    "BenchConfig",
    "BundleConfig",
    "EvalConfig",
    "ExportConfig",
    "GateConfig",
    "GradualConfig",
    "Predictor",
    "PruneofaError",
    "Recipe",
    "SparsifyConfig",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "benchmark",
    "bundle",
    "evaluate",
    "export_model",
    "gate",
    "load_recipe",
    "run_pipeline",
    "sparsify",
    "train",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pruneofa' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from pruneofa.api import benchmark, bundle, evaluate, export_model, gate, run_pipeline, sparsify, train
    from pruneofa.bench.run import BenchConfig
    from pruneofa.compress.prune_once import GradualConfig
    from pruneofa.compress.sparsify import SparsifyConfig
    from pruneofa.core.errors import PruneofaError
    from pruneofa.export.bundle import BundleConfig
    from pruneofa.export.exporter import ExportConfig
    from pruneofa.gates import GateConfig
    from pruneofa.pipeline.recipe import Recipe, load_recipe
    from pruneofa.runtime.predict import Predictor
    from pruneofa.scoring import EvalConfig
    from pruneofa.training.config import TrainConfig
    from pruneofa.training.stage import TrainResult
