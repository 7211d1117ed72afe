"""The dev set an export is verified on: the file the model was trained with (if unchanged) or the one given, tokenized
for the exported model and for torch, or the reason there is none (the checks are then skipped, loudly)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.core.errors import ModelError
from pruneofa.core.files import sha256_file
from pruneofa.training.trained import TrainedFolder


@dataclass(frozen=True)
class DevSplits:
    """The dev set tokenized for the exported model and for torch (the same unless the vocabulary was trimmed:
    then torch reads the source tokenizer's ids, so the check measures what trimming costs)."""

    engine: dict[str, Any]
    torch: dict[str, Any]
    pad_id: int


DevData = DevSplits | str  # or why there is none


def recorded_dev_file(source: TrainedFolder) -> Path | None:
    """The dev file the model was trained with (pruneofa.json "data_files"), if it is still there unchanged."""
    record = (source.meta.get("data_files") or {}).get("validation_file")
    if not record:
        return None
    path = Path(record["path"])
    if not path.is_file():
        return None  # the check is skipped, loudly, with the reason dev_data_missing gives
    if sha256_file(path) != record.get("sha256"):
        raise ModelError(
            f"{path}: the dev file {source.folder} was trained with has changed since (sha256 differs); pass "
            "--validation_file to verify on a dev file explicitly"
        )
    return path


def dev_data(
    source: TrainedFolder,
    folder: Path,
    verify: bool,
    validation_file: Path | None,
    max_eval_samples: int | None,
    cache_dir: Path | None,
    trimmed: bool,
) -> DevData:
    """The tokenized dev splits and the pad id, or why there are none (verification off, no dev data)."""
    from transformers import AutoTokenizer

    from pruneofa import scoring

    if not verify:
        return "--no_verify"
    missing = scoring.dev_data_missing(source.task, validation_file)
    if missing:
        return missing

    def tokenized(where: Path) -> tuple[dict[str, Any], int]:
        tokenizer = AutoTokenizer.from_pretrained(str(where))
        splits = scoring.eval_splits(
            source.task, tokenizer, source.max_seq_length, validation_file, max_eval_samples, cache_dir
        )
        return splits, tokenizer.pad_token_id or 0

    engine, pad_id = tokenized(folder)
    return DevSplits(engine, tokenized(source.folder)[0] if trimmed else engine, pad_id)
