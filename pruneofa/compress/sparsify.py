"""`pruneofa sparsify`: make a sparse pre-trained starting point from a dense model.

Three methods: `magnitude` (one shot, per layer), `obs` (one shot, reconstruction-based: each layer pruned and
updated to keep its outputs on calibration text, see obs.py) and `gradual` (the prune-once step: cubic schedule
with hidden-state distillation from the dense model on unlabeled text, see prune_once.py). The output is a plain
Hugging Face folder (the encoder without a task head, like the Intel sparse checkpoints) plus `sparsity.json`;
`pruneofa train --model_name_or_path DIR` adds a fresh classifier and pattern-locks it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from transformers import AutoModel

from pruneofa.compress import sparsity
from pruneofa.compress.obs import obs_prune_
from pruneofa.compress.prune_once import GradualConfig, distillation_gap, gradual_prune
from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import apply_umask, make_staging_dir, write_json_atomic
from pruneofa.core.outputs import check_not_an_input, claim_output_dir
from pruneofa.core.versions import package_versions
from pruneofa.data.builtin import rotten_tomatoes_unlabeled_texts
from pruneofa.models.loading import from_pretrained_checked, load_tokenizer, resolve_model

REPORT_FILE = "sparsity.json"
BUILTIN_TEXTS = "rotten_tomatoes"
Method = Literal["magnitude", "gradual", "obs"]
OBS_CALIBRATION_TEXTS = 256  # calibration texts for --method obs (H = X^T X per layer)
HELD_OUT_FRACTION = 0.05  # texts kept out of pruning to measure how far the student drifted from the dense model


@dataclass(frozen=True)
class SparsifyConfig:
    """How `sparsify` prunes: to `sparsity` zeros per layer, one shot (`magnitude`) or `gradual` (prune-once).

    `gradual` needs `text_file` (one text per line, or 'rotten_tomatoes'); `schedule` sets its steps and learning
    rate (its `target` is replaced by `sparsity`). `text_file` with `magnitude` only measures the drift.
    """

    output_dir: Path
    sparsity: float = 0.9
    method: Method = "magnitude"
    text_file: str | None = None
    schedule: GradualConfig | None = None
    overwrite_output_dir: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise PruneofaError(f"--sparsity {self.sparsity}: must be in [0, 1), e.g. 0.9 for 90% zeros")
        if self.method not in ("magnitude", "gradual", "obs"):
            raise PruneofaError(f"--method {self.method!r}: unknown; use magnitude, gradual or obs")
        if self.method in ("gradual", "obs") and self.text_file is None:
            raise PruneofaError(f"--method {self.method} needs --text_file (one text per line, or '{BUILTIN_TEXTS}')")


def load_texts(text_file: str, flag: str = "--text_file") -> list[str]:
    """Unlabeled text: one text per line of a file, or the built-in rotten_tomatoes set (plots + train snippets)."""
    if text_file == BUILTIN_TEXTS:
        return rotten_tomatoes_unlabeled_texts(default_cache_dir())
    path = Path(text_file)
    if not path.is_file():
        raise PruneofaError(
            f"{flag} {text_file}: no such file; give a text file (one text per line) or "
            f"'{BUILTIN_TEXTS}' for the built-in unlabeled text"
        )
    try:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise PruneofaError(f"{flag} {text_file}: not UTF-8 text; convert it to UTF-8") from None
    if not texts:
        raise PruneofaError(f"{flag} {text_file}: no non-empty lines")
    return texts


def _claim_output_dir(output_dir: Path, overwrite: bool, model_ref: str, text_file: str | None) -> None:
    """Only an earlier sparse model may be replaced (with --overwrite_output_dir), never an input of this run."""
    check_not_an_input(output_dir, "--output_dir", {"MODEL": model_ref, "--text_file": text_file})
    claim_output_dir(output_dir, "--output_dir", "sparse model", overwrite, "--overwrite_output_dir")


def _write_folder(output_dir: Path, model: Any, tokenizer: Any, report: dict[str, Any]) -> None:
    staging = make_staging_dir(output_dir)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_json_atomic(staging / REPORT_FILE, report)
        apply_umask(staging)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sparsify(model_ref: str, cfg: SparsifyConfig) -> dict[str, Any]:
    """Prune every encoder Linear and the pooler to `cfg.sparsity`; write the folder atomically."""
    output_dir, target, method, text_file = cfg.output_dir, cfg.sparsity, cfg.method, cfg.text_file
    gradual = dataclasses.replace(cfg.schedule, target=target) if cfg.schedule else None
    overwrite = cfg.overwrite_output_dir
    _claim_output_dir(output_dir, overwrite, model_ref, text_file)
    path = resolve_model(model_ref)
    model = from_pretrained_checked(AutoModel, path, "model")
    tokenizer = load_tokenizer(path)
    names = sparsity.prunable_weight_names(model)
    if not names:
        raise PruneofaError(f"model {model_ref!r}: no encoder Linear layers found; pass a BERT-family encoder")
    texts = load_texts(text_file) if text_file else []
    held_out = texts[len(texts) - max(1, int(len(texts) * HELD_OUT_FRACTION)) :] if texts else []
    dense = copy.deepcopy(model) if texts else None
    details: dict[str, Any] = {"method": method}
    if method == "gradual":
        schedule = gradual or GradualConfig(target=target)
        details.update(
            schedule=asdict(schedule), **gradual_prune(model, tokenizer, texts[: len(texts) - len(held_out)], schedule)
        )
    elif method == "obs":
        calibration = texts[: min(OBS_CALIBRATION_TEXTS, len(texts) - len(held_out))]
        obs_prune_(model, tokenizer, calibration, target, names)
        details["calibration_texts"] = len(calibration)
    else:
        sparsity.magnitude_prune_(model, target, names)
    if dense is not None:
        details["held_out_hidden_mse"] = distillation_gap(model, dense, tokenizer, held_out, 128)
    layers = sparsity.sparsity_report(model, names)
    report = {
        "source": model_ref,
        "target": target,
        "overall": sparsity.overall_sparsity(layers),
        "layers": layers,
        "versions": package_versions(),
        **details,
    }
    _write_folder(output_dir, model, tokenizer, report)
    return report
