"""The transfer set: extra in-domain text for task-aware distillation, labeled by the teacher (soft targets only).

Two sources, as in task-specific distillation (Tang et al. 2019; TinyBERT's data augmentation, without its MLM head):
  - the task's own unlabeled rows, where it has them (built-in rotten_tomatoes: plot summaries + train snippets);
  - augmented copies of every training example: per word, masking (the tokenizer's [MASK], else [UNK]) or
    dropping; swapping adjacent words; and, for some copies, n-gram sampling (keep one random contiguous span).

It never holds a dev or test text. Texts are compared normalized (lowercase, whitespace collapsed) with every
held-out text of the task (all non-train splits, and the built-in task's validation and test files whatever the
user passed): an equal unlabeled row or augmented copy is dropped, and so is a training example equal to one (it
is neither distilled on nor augmented: its copies would be near-copies of a dev sentence). Sentence-pair tasks
augment each side; a pair is dropped when either side is a held-out text. Deterministic given the seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

from pruneofa.core.errors import DataError, PruneofaError
from pruneofa.data.builtin import build_rotten_tomatoes, rotten_tomatoes_unlabeled_texts
from pruneofa.data.loading import load_raw_splits, select_first
from pruneofa.data.tasks import TaskSpec

Example = tuple[str, ...]  # one text, or a sentence pair
_ATTEMPTS = 4  # tries per copy to draw a text not seen before (a short sentence has few distinct copies)


@dataclass(frozen=True)
class TransferConfig:
    """How many augmented copies per training example, and how each is made (probabilities per word / pair)."""

    copies: int = 4
    mask_prob: float = 0.1  # per word: replaced by the mask token
    drop_prob: float = 0.1  # per word: dropped
    swap_prob: float = 0.1  # per adjacent pair: swapped
    ngram_prob: float = 0.25  # per copy: only a random contiguous span (1/4 to all but one of the words) is kept
    unlabeled: bool = True  # add the task's built-in unlabeled rows (built-in task, no user files)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.copies < 0:
            raise PruneofaError(f"transfer set copies {self.copies}: must be >= 0 (0: no augmented copies)")
        for name in ("mask_prob", "drop_prob", "swap_prob", "ngram_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise PruneofaError(f"transfer set {name} {value}: must be a probability in [0, 1]")


@dataclass(frozen=True)
class TaskTexts:
    """A task's text, as the transfer set needs it: training examples, held-out ones, unlabeled rows, and the
    labeled dev examples (for reporting only)."""

    train: list[Example]
    held_out: list[Example]  # every validation/test example: nothing distilled on may equal one of their texts
    unlabeled: list[str]
    dev: list[Example]
    dev_labels: list[float]


@dataclass(frozen=True)
class TransferSet:
    train: list[Example]  # the training examples, less any equal to a held-out text
    extra: list[Example]  # unlabeled rows + augmented copies: texts seen nowhere else
    counts: dict[str, int]

    @property
    def examples(self) -> list[Example]:
        return self.train + self.extra


def normalize(text: str) -> str:
    """The form texts are compared in: lowercase, whitespace collapsed."""
    return " ".join(text.lower().split())


def _key(example: Example) -> tuple[str, ...]:
    return tuple(normalize(side) for side in example)


def _examples(ds: datasets.Dataset, task: TaskSpec) -> list[Example]:
    return list(zip(*(ds[key] for key in task.text_keys), strict=True))


def load_task_texts(
    task: TaskSpec,
    train_file: Path | None,
    validation_file: Path | None,
    cache_dir: Path,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> TaskTexts:
    """The task's texts from the user's files, the built-in corpus or the Hub (as `pruneofa train` reads them).

    Unlabeled rows come only with the built-in task's own data: user files have none."""
    raw = load_raw_splits(task, train_file, validation_file, cache_dir)
    if "train" not in raw:
        raise DataError(f"task {task.name!r}: the data has no 'train' split; pass it with --train_file")
    held_out = [ex for split, ds in raw.items() if split != "train" for ex in _examples(ds, task)]
    builtin = task.hub_dataset is None
    if builtin:  # the built-in dev and test stay held out even when the user replaced one of them
        for split, path in build_rotten_tomatoes(cache_dir).items():
            if split != "train":
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
                held_out += [tuple(str(row[key]) for key in task.text_keys) for row in rows]
    user_data = train_file is not None or validation_file is not None
    unlabeled = rotten_tomatoes_unlabeled_texts(cache_dir) if builtin and not user_data else []
    dev_split = task.eval_splits[0]
    dev = select_first(raw[dev_split], max_eval_samples) if dev_split in raw else None
    return TaskTexts(
        train=_examples(select_first(raw["train"], max_train_samples), task),
        held_out=held_out,
        unlabeled=unlabeled,
        dev=_examples(dev, task) if dev is not None else [],
        dev_labels=[float(y) for y in dev["label"]] if dev is not None else [],
    )


def augment_text(text: str, rng: random.Random, mask_token: str, cfg: TransferConfig) -> str:
    """One augmented copy of `text`: per word mask or drop, adjacent swaps, then maybe a random contiguous span."""
    words: list[str] = []
    for word in text.split():
        draw = rng.random()
        if draw < cfg.mask_prob:
            words.append(mask_token)
        elif draw >= cfg.mask_prob + cfg.drop_prob:
            words.append(word)
    if not words:  # every word dropped: keep one
        words = [rng.choice(text.split() or [mask_token])]
    i = 0
    while i < len(words) - 1:
        if rng.random() < cfg.swap_prob:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 2  # a swapped word is not swapped again
        else:
            i += 1
    if len(words) > 1 and rng.random() < cfg.ngram_prob:
        n = rng.randint(max(1, len(words) // 4), len(words) - 1)
        start = rng.randint(0, len(words) - n)
        words = words[start : start + n]
    return " ".join(words)


def build_transfer_set(texts: TaskTexts, mask_token: str, cfg: TransferConfig) -> TransferSet:
    """Training examples + unlabeled rows + `cfg.copies` augmented copies of each training example, every text
    new (normalized) and none equal to a held-out text."""
    held = {normalize(side) for example in texts.held_out for side in example}

    def leaks(example: Example) -> bool:
        return any(normalize(side) in held for side in example)

    train = [example for example in texts.train if not leaks(example)]
    seen = {_key(example) for example in train}
    extra: list[Example] = []
    counts = {"train": len(train), "train_dropped_held_out": len(texts.train) - len(train)}

    def add(example: Example) -> bool:
        key = _key(example)
        if key in seen or leaks(example) or not all(key):
            return False
        seen.add(key)
        extra.append(example)
        return True

    counts["unlabeled"] = sum(add((text,)) for text in texts.unlabeled) if cfg.unlabeled else 0
    rng = random.Random(cfg.seed)
    augmented = 0
    for example in train:
        for _ in range(cfg.copies):
            for _ in range(_ATTEMPTS):
                if add(tuple(augment_text(side, rng, mask_token, cfg) for side in example)):
                    augmented += 1
                    break
    counts["augmented"] = augmented
    return TransferSet(train=train, extra=extra, counts=counts)
