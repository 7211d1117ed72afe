"""Score a model on the task's dev set: a training output (torch) or an export folder (onnxruntime / OpenVINO).

All three paths tokenize the same way (the folder's tokenizer, truncation at the length the model was trained
with, each batch padded to its longest row) and go through `compute_metrics`, so their numbers are comparable
with each other and with the metrics `pruneofa train` recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pruneofa.core import hardware
from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.core.files import read_json
from pruneofa.data.tasks import TaskSpec, get_task
from pruneofa.runtime import engine_choice
from pruneofa.runtime.bundle import is_bundle_file, open_bundle
from pruneofa.runtime.engines import ENGINES, Engine, open_engine
from pruneofa.runtime.manifest import read_manifest, verify_export

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

EvalEngine = Literal["auto", "torch", "onnxruntime", "openvino", "openvino-sparse"]
EVAL_ENGINES: tuple[str, ...] = ("auto", "torch", *ENGINES)


@dataclass(frozen=True)
class EvalConfig:
    task_name: str
    validation_file: Path | None = None
    engine: EvalEngine = "auto"
    max_eval_samples: int | None = None
    batch_size: int = 32
    threads: int | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.engine not in EVAL_ENGINES:
            raise PruneofaError(f"--engine {self.engine!r}: unknown; use one of {', '.join(EVAL_ENGINES)}")
        if self.batch_size < 1:
            raise PruneofaError(f"--batch_size {self.batch_size}: must be at least 1")
        if self.max_eval_samples is not None and self.max_eval_samples < 1:
            raise PruneofaError(f"--max_eval_samples {self.max_eval_samples}: must be at least 1 (or left out)")


# ---------------------------------------------------------------- data


def dev_data_missing(task: TaskSpec, validation_file: Path | None) -> str | None:
    """Why the dev set cannot be had right now (None when it can): GLUE needs the Hub or --validation_file."""
    if task.hub_dataset is None or validation_file is not None:
        return None
    from pruneofa.core.hub import hub_offline_reason

    reason = hub_offline_reason()
    return f"task {task.name!r} needs the Hub ({reason}) or --validation_file" if reason else None


def eval_splits(
    task: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    validation_file: Path | None,
    max_eval_samples: int | None,
    cache_dir: Path | None,
) -> dict[str, datasets.Dataset]:
    """Tokenized dev split(s) of `task`, the first `max_eval_samples` rows of each."""
    from pruneofa.core.cache import default_cache_dir
    from pruneofa.data.loading import load_raw_splits, select_first, tokenize_splits

    cache = cache_dir or default_cache_dir()
    # With a validation file, pass it as the train file too: load_raw_splits then needs nothing from the Hub
    # (eval never uses the train split).
    raw = load_raw_splits(task, validation_file, validation_file, cache)
    names = [s for s in task.eval_splits if s in raw]
    if not names:
        raise PruneofaError(f"task {task.name!r}: the data has no dev split; pass --validation_file")
    import datasets

    dev = datasets.DatasetDict({s: select_first(raw[s], max_eval_samples) for s in names})
    return dict(tokenize_splits(dev, tokenizer, task, max_length, pad_to_max_length=False))


def batches(
    dataset: datasets.Dataset, pad_id: int, batch_size: int, names: list[str]
) -> Iterator[dict[str, np.ndarray]]:
    """int64 arrays per input name, each batch right-padded to its longest row (attention_mask 0 on padding)."""
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        width = max(len(ids) for ids in rows["input_ids"])
        out = {}
        for name in names:
            fill = pad_id if name == "input_ids" else 0
            out[name] = np.array([seq + [fill] * (width - len(seq)) for seq in rows[name]], dtype=np.int64)
        yield out


def _logits(
    forward: Callable[[dict[str, np.ndarray]], np.ndarray],
    dataset: datasets.Dataset,
    pad_id: int,
    batch_size: int,
    names: list[str],
) -> np.ndarray:
    parts = [forward(feeds) for feeds in batches(dataset, pad_id, batch_size, names)]
    return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


def torch_forward(model: Any) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import torch

    def forward(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits
        return np.asarray(out.float().numpy(), dtype=np.float32)

    return forward


def engine_forward(engine: Engine) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return engine.run


def score(
    task: TaskSpec,
    splits: dict[str, datasets.Dataset],
    forward: Callable[[dict[str, np.ndarray]], np.ndarray],
    pad_id: int,
    batch_size: int,
    names: list[str],
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """(metrics per split, logits per split) of one model."""
    from pruneofa.data.metrics import compute_metrics

    metrics, logits = {}, {}
    for split, dataset in splits.items():
        logits[split] = _logits(forward, dataset, pad_id, batch_size, names)
        metrics[split] = compute_metrics(task, logits[split], np.asarray(dataset["labels"]))
    return metrics, logits


def logit_agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Max |difference| of logits and the share of examples with the same predicted label."""
    if reference.size == 0:
        return {"max_abs_diff": 0.0, "argmax_agreement": 1.0}
    return {
        "max_abs_diff": float(np.abs(reference - other).max()),
        "argmax_agreement": float((reference.argmax(-1) == other.argmax(-1)).mean()),
    }


# ---------------------------------------------------------------- the eval verb


def _input_names(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]


def _check_task(recorded: object, task: TaskSpec, folder: Path) -> None:
    if isinstance(recorded, str) and recorded != task.name:
        raise PruneofaError(
            f"{folder}: was trained on task {recorded!r}, not {task.name!r}; pass --task_name {recorded}"
        )


def evaluate_folder(folder: Path, cfg: EvalConfig) -> dict[str, Any]:
    """Dev metrics of a training output (torch) or an export folder (onnxruntime/OpenVINO), plus what ran."""
    from transformers import AutoTokenizer

    from pruneofa.training.trained import is_training_output, open_trained

    task = get_task(cfg.task_name)
    given = folder
    if is_bundle_file(folder):
        folder = open_bundle(folder, cfg.cache_dir)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder; pass a `pruneofa train` output or a `pruneofa export` folder")
    forward: Callable[[dict[str, np.ndarray]], np.ndarray]
    if is_training_output(folder):
        if cfg.engine not in ("auto", "torch"):
            raise PruneofaError(
                f"{folder}: is a training output (torch weights); --engine {cfg.engine} needs an export folder, "
                "make one with `pruneofa export`"
            )
        trained = open_trained(folder)
        _check_task(trained.meta.get("task_name"), task, folder)
        max_length = trained.max_seq_length
        model = trained.load_model()
        if cfg.threads is not None:
            import torch

            torch.set_num_threads(cfg.threads)
        forward = torch_forward(model)
        engine_info = torch_description(quantized=trained.is_qat, threads=cfg.threads)
    else:
        if cfg.engine == "torch":
            raise PruneofaError(f"{folder}: not a training output, so torch cannot run it; use --engine onnxruntime")
        # A bundle's members were checked when it was unpacked; an export folder is checked against its manifest.
        manifest = (read_manifest(folder) or {}) if given != folder else verify_export(folder, cfg.cache_dir)
        _check_task(manifest.get("task_name"), task, folder)
        if cfg.engine == "auto":
            choice = engine_choice.choose(folder, cfg.batch_size, hardware.cpu_info(), cfg.cache_dir)
        else:
            choice = engine_choice.Choice(cfg.engine, f"{cfg.engine}: named by --engine")
        engine = open_engine(folder, choice.engine, threads=cfg.threads)
        max_length = int(read_json(folder / "tokenizer_config.json").get("model_max_length", 512))
        forward = engine_forward(engine)
        engine_info = {**engine.describe(), "engine_choice": choice.reason}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: the tokenizer cannot be loaded ({exc}); re-export or re-train") from None
    splits = eval_splits(task, tokenizer, max_length, cfg.validation_file, cfg.max_eval_samples, cfg.cache_dir)
    metrics, _ = score(task, splits, forward, tokenizer.pad_token_id or 0, cfg.batch_size, _input_names(tokenizer))
    return {
        **metrics,
        "task_name": task.name,
        "model": str(given),
        "engine": engine_info,
        "max_seq_length": max_length,
        "num_examples": {split: len(ds) for split, ds in splits.items()},
    }


def torch_description(quantized: bool, threads: int | None) -> dict[str, Any]:
    import torch

    return {
        "engine": "torch",
        "version": torch.__version__,
        "threads": threads or torch.get_num_threads(),
        "precision": "int8 fake-quant (QAT)" if quantized else "fp32",
    }
