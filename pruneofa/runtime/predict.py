"""The edge runtime: label + probabilities from an export folder with only an inference engine and `tokenizers`.

No torch and no transformers are imported on this path (a test checks `sys.modules`): the folder's
tokenizer.json does the tokenization (truncation at the exported model_max_length, each batch padded to its
longest row, token_type_ids for pairs), which reproduces what transformers feeds the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.core.errors import DataError, ModelError
from pruneofa.core.files import read_json
from pruneofa.runtime.bundle import is_bundle_file, open_bundle
from pruneofa.runtime.engines import EngineName, default_engine, open_engine

# Accepted JSONL keys for (text, pair): ours first, then the GLUE column names.
TEXT_KEYS: tuple[tuple[str, str | None], ...] = (
    ("text", "text_pair"),
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("sentence", None),
)
Row = tuple[str, str | None]
_FIX = "pass a folder written by `pruneofa export`"


def _token_text(value: object) -> str | None:
    """A special token from tokenizer_config.json: a string, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class Predictor:
    """Loads an export folder (or a `pruneofa bundle` file, verified and unpacked once into the cache) once;
    `predict` maps rows of (text, optional pair) to label + probabilities."""

    def __init__(self, folder: Path, engine: EngineName | None = None, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        if is_bundle_file(folder):
            folder = open_bundle(folder)
        if not folder.is_dir():
            raise ModelError(f"{folder}: no such folder; pass a folder written by `pruneofa export` or a bundle file")
        config = read_json(folder / "config.json", _FIX)
        tok_config = (
            read_json(folder / "tokenizer_config.json", _FIX) if (folder / "tokenizer_config.json").is_file() else {}
        )
        self.regression = config.get("problem_type") == "regression"
        id2label = config.get("id2label") or {}
        self.labels = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(len(id2label))]
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ModelError(f"{folder}: no tokenizer.json; re-run `pruneofa export`")
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
            raise ModelError(f"{tokenizer_file}: unreadable ({exc}); re-run `pruneofa export`") from None
        self.max_length = min(int(tok_config.get("model_max_length") or 512), 512)
        pad_token = _token_text(tok_config.get("pad_token")) or "[PAD]"
        pad_id = self.tokenizer.token_to_id(pad_token)
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)
        self.engine = open_engine(folder, engine or default_engine(folder), threads=threads)
        self.input_names = self.engine.input_names

    def encode(self, rows: list[Row]) -> dict[str, np.ndarray]:
        inputs: list[Any] = [text if pair is None else (text, pair) for text, pair in rows]
        encodings = self.tokenizer.encode_batch(inputs)
        arrays = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {name: np.array(arrays[name], dtype=np.int64) for name in self.input_names}

    def predict(self, rows: list[Row]) -> list[dict[str, Any]]:
        if not rows:
            return []
        logits = self.engine.run(self.encode(rows))
        if self.regression:
            return [{"score": float(row[0])} for row in logits]
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = shifted / shifted.sum(axis=-1, keepdims=True)
        labels = self.labels or [str(i) for i in range(probs.shape[-1])]
        return [
            {
                "label": labels[int(p.argmax())],
                "probabilities": {lab: float(v) for lab, v in zip(labels, p, strict=True)},
            }
            for p in probs
        ]


def parse_row(line: str, where: str) -> Row:
    """One JSONL row: {"text": ..., "text_pair": ...} or GLUE columns ({"premise": ..., "hypothesis": ...})."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f'{where}: not JSON ({exc.msg}); write one object per line like {{"text": "..."}}') from None
    if isinstance(data, str):
        return data, None
    if isinstance(data, dict):
        for first, second in TEXT_KEYS:
            text = data.get(first)
            if isinstance(text, str):
                pair = data.get(second) if second else None
                if pair is not None and not isinstance(pair, str):
                    raise DataError(f"{where}: {second!r} must be a string")
                return text, pair
    keys = ", ".join(f"{a}/{b}" if b else a for a, b in TEXT_KEYS)
    raise DataError(f"{where}: no text field; use one of {keys}")


def read_rows(lines: Iterable[str], source: str = "stdin") -> Iterator[Row]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_row(line, f"{source} line {number}")


def predict_stream(predictor: Predictor, rows: Iterable[Row], batch_size: int) -> Iterator[dict[str, Any]]:
    """Predictions in input order, computed `batch_size` rows at a time (one engine call per batch)."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == batch_size:
            yield from predictor.predict(batch)
            batch = []
    yield from predictor.predict(batch)
