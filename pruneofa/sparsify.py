"""`pruneofa sparsify`: make a sparse pre-trained starting point from a dense model (one-shot magnitude pruning).

The output is a plain Hugging Face folder (the encoder without a task head, like the Intel sparse checkpoints)
plus `sparsity.json`; `pruneofa train --model_name_or_path DIR` adds a fresh classifier and pattern-locks it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers import AutoModel

from pruneofa import sparsity
from pruneofa.checkpoint import write_json_atomic
from pruneofa.errors import PruneofaError
from pruneofa.modeling import from_pretrained_checked, load_tokenizer, resolve_model
from pruneofa.versions import package_versions

REPORT_FILE = "sparsity.json"


def _claim_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise PruneofaError(
            f"--output_dir {output_dir}: exists and is not empty; choose another folder or pass --overwrite_output_dir"
        )


def sparsify_one_shot(model_ref: str, output_dir: Path, target: float, overwrite: bool = False) -> dict[str, Any]:
    """Prune every encoder Linear and the pooler to `target` sparsity by magnitude; write the folder atomically."""
    if not 0.0 <= target < 1.0:
        raise PruneofaError(f"--sparsity {target}: must be in [0, 1), e.g. 0.9 for 90% zeros")
    _claim_output_dir(output_dir, overwrite)
    path = resolve_model(model_ref)
    model = from_pretrained_checked(AutoModel, path, "model")
    tokenizer = load_tokenizer(path)
    names = sparsity.prunable_weight_names(model)
    if not names:
        raise PruneofaError(f"model {model_ref!r}: no encoder Linear layers found; pass a BERT-family encoder")
    sparsity.magnitude_prune_(model, target, names)
    layers = sparsity.sparsity_report(model, names)
    report = {
        "source": model_ref,
        "method": "one-shot magnitude (per layer)",
        "target": target,
        "overall": sparsity.overall_sparsity(layers),
        "layers": layers,
        "versions": package_versions(),
    }
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.staging-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_json_atomic(staging / REPORT_FILE, report)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report
