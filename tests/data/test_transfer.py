"""The transfer set: deterministic augmentation, and never a dev or test text (also when the data tries to leak one)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pruneofa.core.errors import PruneofaError
from pruneofa.data.tasks import get_task
from pruneofa.data.transfer import (
    TaskTexts,
    TransferConfig,
    augment_text,
    build_transfer_set,
    load_task_texts,
    normalize,
)

MASK = "[MASK]"


def texts(train: list[tuple[str, ...]], held_out: list[tuple[str, ...]], unlabeled: tuple[str, ...] = ()) -> TaskTexts:
    return TaskTexts(train=train, held_out=held_out, unlabeled=list(unlabeled), dev=[], dev_labels=[])


def held_texts(t: TaskTexts) -> set[str]:
    return {normalize(side) for example in t.held_out for side in example}


def assert_no_leak(t: TaskTexts, cfg: TransferConfig) -> None:
    found = build_transfer_set(t, MASK, cfg)
    held = held_texts(t)
    leaked = [ex for ex in found.examples if any(normalize(side) in held for side in ex)]
    assert not leaked, leaked[:3]


def test_each_augmentation_alone() -> None:
    rng = random.Random(0)
    text = "a b c d e f"
    off = TransferConfig(mask_prob=0.0, drop_prob=0.0, swap_prob=0.0, ngram_prob=0.0)
    assert augment_text(text, rng, MASK, off) == text
    assert augment_text(text, rng, MASK, TransferConfig(mask_prob=1.0, ngram_prob=0.0)) == " ".join([MASK] * 6)
    assert augment_text(text, rng, MASK, TransferConfig(mask_prob=0.0, drop_prob=1.0, ngram_prob=0.0)) in text.split()
    swap = TransferConfig(mask_prob=0.0, drop_prob=0.0, swap_prob=1.0, ngram_prob=0.0)
    assert augment_text(text, rng, MASK, swap) == "b a d c f e"
    span = augment_text(text, rng, MASK, TransferConfig(mask_prob=0.0, drop_prob=0.0, swap_prob=0.0, ngram_prob=1.0))
    assert span in text and 1 <= len(span.split()) < 6  # a contiguous part, never the whole text


def test_deterministic_given_the_seed() -> None:
    train = [(f"the film number {i} was good and long and fun to watch",) for i in range(30)]
    t = texts(train, [("something else",)], ("an unlabeled plot row", "another one"))
    a = build_transfer_set(t, MASK, TransferConfig(seed=3))
    b = build_transfer_set(t, MASK, TransferConfig(seed=3))
    c = build_transfer_set(t, MASK, TransferConfig(seed=4))
    assert a == b and a.extra != c.extra
    assert a.counts == {"train": 30, "train_dropped_held_out": 0, "unlabeled": 2, "augmented": 120}
    keys = [tuple(normalize(s) for s in ex) for ex in a.examples]
    assert len(keys) == len(set(keys))  # every text once


def test_adversarial_rows_equal_to_dev_text_are_dropped() -> None:
    dev = [("A Great Film",), ("boring   plot",)]
    test = [("the best movie of the year",)]
    train = [
        ("a great film",),  # a train sentence equal to a dev sentence (case and spaces differ)
        ("a fine film with a boring plot",),
        ("quite good",),
    ]
    unlabeled = ["The best movie   of the year", "a plot summary about a heist"]  # a plot row equal to a test text
    t = texts(train, dev + test, tuple(unlabeled))
    found = build_transfer_set(t, MASK, TransferConfig(copies=20, ngram_prob=0.9, seed=1))
    assert ("a great film",) not in found.train and found.counts["train_dropped_held_out"] == 1
    assert found.counts["unlabeled"] == 1 and ("a plot summary about a heist",) in found.extra
    # no copy of the dropped train row either: "a great film" is a dev text, its copies would be near-copies
    assert not any("great" in ex[0] for ex in found.extra)
    held = held_texts(t)
    assert held & {normalize(ex[0]) for ex in found.examples} == set()
    # n-gram sampling of "a fine film with a boring plot" may well hit "boring plot": it must never be kept
    assert_no_leak(t, TransferConfig(copies=50, ngram_prob=1.0, mask_prob=0.0, drop_prob=0.0, swap_prob=0.0))


def test_an_augmented_copy_equal_to_a_dev_text_is_dropped() -> None:
    # every text two words can become, except the sentence itself, is a dev text: no copy may be kept
    variants = ["movie good", "[mask] movie", "movie [mask]", "good [mask]", "[mask] good", "[mask] [mask]", "good",
                "movie", "[mask]"]  # fmt: skip
    t = texts([("good movie",)], [(v,) for v in variants])
    found = build_transfer_set(t, MASK, TransferConfig(copies=30, mask_prob=0.3, drop_prob=0.3, swap_prob=0.5))
    assert found.train == [("good movie",)] and found.extra == [] and found.counts["augmented"] == 0


def test_sentence_pairs_augment_each_side_and_never_leak() -> None:
    train = [(f"premise number {i} says the cat sat on the mat", f"hypothesis {i} says a cat sat") for i in range(20)]
    train.append(("a premise shared with dev", "some hypothesis here"))
    dev = [("A premise shared with dev", "another hypothesis")]
    t = texts(train, dev)
    found = build_transfer_set(t, MASK, TransferConfig(copies=3, seed=2))
    assert found.counts["train_dropped_held_out"] == 1 and len(found.train) == 20
    assert found.counts["augmented"] == 60 and all(len(ex) == 2 for ex in found.extra)
    originals = set(train)
    assert not any(ex in originals for ex in found.extra)
    assert_no_leak(t, TransferConfig(copies=10, seed=5))


def test_config_validation_names_the_field() -> None:
    with pytest.raises(PruneofaError, match="mask_prob"):
        TransferConfig(mask_prob=1.5)
    with pytest.raises(PruneofaError, match="copies"):
        TransferConfig(copies=-1)


def test_builtin_task_never_leaks_dev_or_test(tmp_path: Path) -> None:
    task = get_task("rotten_tomatoes")
    t = load_task_texts(task, None, None, tmp_path, max_train_samples=150, max_eval_samples=20)
    assert len(t.train) == 150 and len(t.unlabeled) > 1000 and len(t.dev) == len(t.dev_labels) == 20
    found = build_transfer_set(t, MASK, TransferConfig(copies=3, seed=0))
    assert found.counts["unlabeled"] > 1000 and found.counts["augmented"] > 400
    held = held_texts(t)
    assert len(held) > 2000  # validation + test
    assert not any(normalize(ex[0]) in held for ex in found.examples)


def test_user_files_have_no_unlabeled_rows_and_are_held_out(tmp_path: Path) -> None:
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("".join(json.dumps({"sentence": s, "label": i % 2}) + "\n" for i, s in
                             enumerate(["nice one", "Bad One", "so so film here"])))  # fmt: skip
    dev.write_text(json.dumps({"sentence": "bad one", "label": 0}) + "\n")
    for task_name in ("sst2", "rotten_tomatoes"):
        t = load_task_texts(get_task(task_name), train, dev, tmp_path / "cache")
        assert t.unlabeled == [] and t.dev == [("bad one",)] and t.dev_labels == [0.0]
        found = build_transfer_set(t, MASK, TransferConfig(copies=5))
        assert found.counts["unlabeled"] == 0 and found.counts["train_dropped_held_out"] == 1
        assert not any(normalize(ex[0]) == "bad one" for ex in found.examples)
