"""A tiny task the tiny model learns in seconds: sentiment from a handful of polar words, as sst2-style user files
(so no Hub access is needed), plus a dense teacher fine-tuned on it in-process."""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = ("great", "wonderful", "superb", "lovely", "excellent", "brilliant", "moving", "delightful")
NEGATIVE = ("awful", "terrible", "boring", "dreadful", "poor", "dull", "clumsy", "tedious")
TEMPLATES = (
    "the movie was {a} and the acting was {b}",
    "a {a} film with a {b} script",
    "{a} from start to finish , truly {b}",
    "i found it {a} ; the ending was {b}",
    "what a {a} story , {b} cast",
)


def sentences(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = POSITIVE if label else NEGATIVE
        text = rng.choice(TEMPLATES).format(a=rng.choice(words), b=rng.choice(words))
        rows.append({"sentence": text, "label": label})
    return rows


def write_task(folder: Path, n_train: int = 192, n_dev: int = 64) -> tuple[Path, Path]:
    """train.jsonl and dev.jsonl of the tiny sst2-style task (labels 0 negative, 1 positive)."""
    folder.mkdir(parents=True, exist_ok=True)
    train, dev = folder / "train.jsonl", folder / "dev.jsonl"
    dev_rows = sentences(n_dev, seed=2)
    dev_texts = {row["sentence"] for row in dev_rows}
    train_rows = [row for row in sentences(n_train * 2, seed=1) if row["sentence"] not in dev_texts][:n_train]
    train.write_text("".join(json.dumps(row) + "\n" for row in train_rows))
    dev.write_text("".join(json.dumps(row) + "\n" for row in dev_rows))
    return train, dev


def train_teacher(folder: Path, train: Path, dev: Path) -> Path:
    """tiny-bert fine-tuned on the tiny task (dev accuracy ~1.0), in-process."""
    import pruneofa

    out = folder / "teacher"
    cfg = pruneofa.TrainConfig(task_name="sst2", output_dir=out, model_name_or_path="tiny-bert", train_file=train,
                               validation_file=dev, max_seq_length=32, batch_size=16, learning_rate=2e-3,
                               num_train_epochs=4, seed=0)  # fmt: skip
    pruneofa.train(cfg)
    return out
