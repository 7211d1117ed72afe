"""The public Python API: one verb per step of the flow, each taking its config object. The CLI calls exactly these.

    import pruneofa
    teacher = pruneofa.train(pruneofa.TrainConfig(task_name="rotten_tomatoes", model_name_or_path="tiny-bert",
                                                  output_dir=Path("runs/teacher")))

Heavy libraries (torch, transformers, onnx, OpenVINO) are imported inside each verb, so `import pruneofa` is cheap
and the torch-free runtime stays torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pruneofa.bench.run import BenchConfig
    from pruneofa.compress.sparsify import SparsifyConfig
    from pruneofa.export.bundle import BundleConfig
    from pruneofa.export.exporter import ExportConfig
    from pruneofa.gates import GateConfig, Outcome
    from pruneofa.pipeline.recipe import Recipe
    from pruneofa.scoring import EvalConfig
    from pruneofa.training.config import TrainConfig
    from pruneofa.training.stage import TrainResult

Progress = Callable[[str, int, int], None]


def train(config: TrainConfig, *, ddp_backend: str | None = None) -> TrainResult:
    """Fine-tune one stage: plain (a dense teacher), stage 1 (`do_prune` + `do_distillation`) or stage 2 (also
    `do_quantization`, `resume` = the stage-1 folder). Under torchrun every process calls this; `result.is_main`
    tells the process that should report. The best epoch's model is left in `config.output_dir`."""
    from pruneofa.training.distributed import runtime
    from pruneofa.training.stage import train as train_stage

    with runtime(no_cuda=config.no_cuda, backend=ddp_backend) as rt:
        return train_stage(config, rt)


def sparsify(model: str | None, config: SparsifyConfig) -> dict[str, Any]:
    """Make a sparse starting point from a dense model (folder, Hub id or built-in name), or with method "task" from
    the fine-tuned teacher `config.task.teacher` (then `model` may be None); returns the sparsity report also
    written to `config.output_dir/sparsity.json`."""
    from pruneofa.compress.sparsify import sparsify as sparsify_model

    return sparsify_model(model, config)


def export_model(model: Path, config: ExportConfig) -> dict[str, Any]:
    """Export a training folder to ONNX (QDQ int8 for a QAT model) and OpenVINO IR, verified on the dev set;
    returns the export's manifest (also written to `config.output_dir/manifest.json`)."""
    from pruneofa.export.exporter import export

    return export(model, config)


def bundle(export_dir: Path, config: BundleConfig) -> dict[str, Any]:
    """Pack a verified export folder into one .tar.gz (model with packed sparse weights, tokenizer, labels,
    manifest, sha256 of every member, README); `evaluate` and `Predictor` take the file directly."""
    from pruneofa.export.bundle import write_bundle

    return write_bundle(export_dir, config)


def evaluate(model: Path, config: EvalConfig) -> dict[str, Any]:
    """Score a training folder (torch) or an export folder (onnxruntime / OpenVINO) on the task's dev set; returns
    the metrics document `pruneofa eval` prints ({"validation": {"accuracy": ...}, "task_name": ...})."""
    from pruneofa.scoring import evaluate_folder

    return evaluate_folder(model, config)


def benchmark(
    sparse_export: Path, baseline: Path, config: BenchConfig, progress: Progress | None = None
) -> dict[str, Any]:
    """Time the sparse-int8 export against a dense baseline (export or training folder) on every engine,
    interleaved in one run; returns the bench.json document. `progress(key, done, total)` is called as it goes."""
    from pruneofa.bench.run import run_bench

    return run_bench(sparse_export, baseline, config, progress)


def gate(config: GateConfig) -> list[Outcome]:
    """Check eval/bench result files against the rules; one outcome per rule (`outcome.passed`)."""
    from pruneofa import gates

    return gates.check(config)


def run_pipeline(
    recipe: Recipe | str | None,
    output_dir: Path,
    *,
    dry_run: bool = False,
    no_cuda: bool = False,
    say: Callable[[str], None] = print,
    overwrite_output_dir: bool = False,
) -> dict[str, Any]:
    """The whole flow from one recipe (a Recipe, a .toml path, a shipped name, or None for the offline default):
    teacher, sparse student, stage 1, stage 2, exports, bench, gate, report. Finished steps are skipped on a
    re-run. Step folders under `output_dir` that this pipeline did not make are refused unless
    `overwrite_output_dir`. Returns the pipeline state (`state["steps"][name]["summary"]`)."""
    from pruneofa.pipeline.recipe import Recipe, load_recipe
    from pruneofa.pipeline.runner import run_pipeline as run_steps
    from pruneofa.training.distributed import runtime

    chosen = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    with runtime(no_cuda=no_cuda) as rt:
        return run_steps(chosen, output_dir, rt, dry_run=dry_run, say=say, overwrite_output_dir=overwrite_output_dir)
