"""Task data: the user's files, the built-in corpus or the Hub -> validated splits -> token ids -> batches.

Every split leaves `load_raw_splits` in one shape: the task's text columns (strings) and `label` (int64 class
ids, float32 for stsb), so tokenization and training never see a user's column quirks. Bad rows are found with
Arrow compute over whole columns (fast on 400k-row MNLI) and reported by their 1-based data row.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pruneofa.core.errors import DataError, PruneofaError
from pruneofa.core.hub import require_hub
from pruneofa.data.builtin import build_rotten_tomatoes
from pruneofa.data.tasks import TaskSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
_HASH_BATCH = 10_000  # fixed, so a fingerprint never depends on how Arrow happened to chunk the data


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No datasets progress bars inside the block; the caller's setting comes back afterwards."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """No datasets log lines inside the block (a file it cannot read is logged there, then raised: we report it)."""
    level = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)


# ---------------------------------------------------------------- what the user called each file

_FILE_NAMES: contextvars.ContextVar[dict[Path, str] | None] = contextvars.ContextVar("pruneofa_files", default=None)


@contextlib.contextmanager
def named_files(flags: Mapping[str, Path | str | None]) -> Iterator[None]:
    """Inside the block, errors about these files name them the way the user gave them (flag -> path), e.g.
    {"--validation_file": path}: `pruneofa eval` passes its dev file for both splits, and its errors must say
    --validation_file, not "train file". Where two flags name the same file, the first one given names it."""
    names = dict(_FILE_NAMES.get() or {})
    for flag, path in reversed(list(flags.items())):
        if path is not None:
            names[Path(path)] = flag
    token = _FILE_NAMES.set(names)
    try:
        yield
    finally:
        _FILE_NAMES.reset(token)


def _file_label(path: Path, role: str) -> str:
    """How messages name a data file: by the flag it came with (see `named_files`), else by its role."""
    names = _FILE_NAMES.get() or {}
    flag = names.get(Path(path))
    if flag is None:
        resolved = Path(path).resolve()
        flag = next((f for p, f in names.items() if p.resolve() == resolved), None)
    return f"{flag} {path}" if flag else f"{role} file {path}"


# ---------------------------------------------------------------- loading


def load_raw_splits(
    task: TaskSpec, train_file: Path | None, validation_file: Path | None, cache_dir: Path
) -> datasets.DatasetDict:
    """Train and dev splits of `task`: the given files, the rest from the built-in corpus or the Hub.

    `validation_file` becomes the task's first eval split (`validation_matched` for mnli). Hub test splits
    carry no labels (-1) and are dropped.
    """
    dev = task.eval_splits[0]
    files = {split: path for split, path in (("train", train_file), (dev, validation_file)) if path is not None}
    splits: dict[str, datasets.Dataset] = {}
    with _quiet():
        if len(files) < 2:
            splits.update(_default_splits(task, cache_dir))
        for split, path in files.items():
            where = _file_label(path, "train" if split == "train" else "validation")
            splits[split] = _normalize_split(task, _load_file(path, where, cache_dir), where)
    return datasets.DatasetDict(splits)


def _default_splits(task: TaskSpec, cache_dir: Path) -> dict[str, datasets.Dataset]:
    if task.hub_dataset is None:
        files = build_rotten_tomatoes(cache_dir)
        where = {split: f"built-in {split} file {path}" for split, path in files.items()}
        return {
            split: _normalize_split(task, _load_file(path, where[split], cache_dir), where[split])
            for split, path in files.items()
        }
    raw = _load_hub(task)
    return {
        split: _normalize_split(task, ds, f"{'/'.join(task.hub_dataset)} split {split}")
        for split, ds in raw.items()
        if not split.startswith("test")
    }


def _load_hub(task: TaskSpec) -> datasets.DatasetDict:
    assert task.hub_dataset is not None
    path, config = task.hub_dataset
    keys = ",".join((*task.text_keys, "label"))
    require_hub(
        f"task '{task.name}' ({path}/{config})",
        f"pass --train_file and --validation_file (csv/tsv/json/jsonl with columns {keys})",
    )
    try:
        loaded = datasets.load_dataset(path, config)
    except Exception as e:  # offline, proxy, missing cache...: all mean "give us files"
        raise PruneofaError(
            f"task '{task.name}': could not load {path} from the Hugging Face Hub (offline?); "
            f"pass --train_file and --validation_file (csv/tsv/json/jsonl with columns {keys})"
        ) from e
    assert isinstance(loaded, datasets.DatasetDict)
    return loaded


def check_data_file(path: Path, where: str) -> None:
    """What can be checked of a data file without parsing it: there, a known type, UTF-8 throughout."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{where}: no such file; check the path")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{where}: unknown file type '{path.suffix}'; use one of {', '.join(SUFFIXES)}")
    _check_utf8(path, where)


def _load_file(path: Path, where: str, cache_dir: Path) -> datasets.Dataset:
    path = Path(path)
    check_data_file(path, where)
    suffix = path.suffix.lower()
    try:
        with _quiet_logs():
            if suffix in (".csv", ".tsv"):
                ds = _load_delimited(path, suffix, cache_dir, where)
            else:
                ds = datasets.load_dataset(
                    "json", data_files={"data": str(path)}, split="data", cache_dir=str(cache_dir / "datasets")
                )
    except (
        ValueError,
        TypeError,
        OSError,
        pa.ArrowException,
        datasets.exceptions.DatasetGenerationError,
    ) as e:
        reason = _root_reason(e)
        if "corresponds to no data" in reason:  # datasets' words for a file with a header and no rows
            raise DataError(f"{where}: has no data rows; pass a file with at least one row") from e
        if suffix in (".json", ".jsonl"):
            problem = _json_problem(path, suffix, where)
            if problem:
                raise DataError(problem) from e
        raise DataError(f"{where}: cannot be parsed as {suffix[1:]} ({reason}); fix the file format") from e
    assert isinstance(ds, datasets.Dataset)
    if ds.num_rows == 0:
        raise DataError(f"{where}: has no data rows; pass a file with at least one row")
    return ds


_UTF8_CHUNK = 1 << 22


def _check_utf8(path: Path, where: str) -> None:
    """The whole file decodes as UTF-8; else an error naming the line, the byte offset and the byte.

    Read in chunks (a big file is never held twice), so a character cut by a chunk's end is carried over."""
    offset, line, pending = 0, 1, b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(_UTF8_CHUNK)
            data = pending + chunk
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as exc:
                if not (chunk and exc.reason == "unexpected end of data"):
                    at = offset + exc.start
                    line += data.count(b"\n", 0, exc.start)
                    raise DataError(
                        f"{where}, line {line}: byte 0x{data[exc.start]:02x} at offset {at} is not UTF-8; "
                        "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
                    ) from None
                good = exc.start  # the start of a character the next chunk completes
            line += data.count(b"\n", 0, good)
            offset += good
            pending = data[good:]
            if not chunk:
                return


def _root_reason(exc: BaseException) -> str:
    """The first line of the innermost cause: datasets wraps the parser's own words (which name the line)."""
    seen: set[int] = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _json_kind(value: object) -> str:
    kinds = ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string"), (list, "list"))
    return "null" if value is None else next((name for kind, name in kinds if isinstance(value, kind)), "value")


def _json_problem(path: Path, suffix: str, where: str) -> str | None:
    """Why a .json/.jsonl file that datasets could not read is not a file of JSON objects: line and column."""
    fmt = suffix[1:]
    example = 'e.g. {"sentence": "...", "label": 1}'
    text = path.read_text(encoding="utf-8")  # UTF-8 was checked
    lines = text.split("\n")
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            first = next((ln for ln in lines if ln.strip()), "")
            try:
                one_per_line = isinstance(json.loads(first), dict) and len(lines) > 1
            except json.JSONDecodeError:
                one_per_line = False
            if not one_per_line:
                return (
                    f"{where}, line {exc.lineno}, column {exc.colno}: cannot be parsed as json ({exc.msg}); "
                    "fix the file format"
                )
        else:
            rows = doc if isinstance(doc, list) else [doc]
            for number, row in enumerate(rows, start=1):
                if not isinstance(row, dict):
                    return (
                        f"{where}: cannot be parsed as json (element {number} is a JSON {_json_kind(row)}, "
                        f"not an object); give a list of objects, {example}"
                    )
            return None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return (
                f"{where}, line {number}: cannot be parsed as {fmt} (not valid JSON: {exc.msg} at column "
                f"{exc.colno}); write one JSON object per line, {example}"
            )
        if not isinstance(row, dict):
            return (
                f"{where}, line {number}: cannot be parsed as {fmt} (a JSON {_json_kind(row)}, not an object); "
                f"write one JSON object per line, {example}"
            )
    return None


def _load_delimited(path: Path, suffix: str, cache_dir: Path, where: str) -> datasets.Dataset:
    import pandas as pd

    # GLUE's .tsv files hold unbalanced quotes inside sentences: quotes are plain characters there.
    fmt: dict[str, Any] = {"sep": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {"sep": ","}
    try:
        columns = list(pd.read_csv(path, nrows=0, **fmt).columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: is empty; pass a file with a header row") from None
    # Every column is read as text: otherwise pandas guesses types per 10k-row chunk (ints in one chunk, names
    # in the next fail), and "N/A" or "null" sentences (MNLI has them) would become missing values.
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    ds = datasets.load_dataset(
        "csv",
        data_files={"data": str(path)},
        split="data",
        features=features,
        keep_default_na=False,
        cache_dir=str(cache_dir / "datasets"),
        **({"delimiter": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}),
    )
    assert isinstance(ds, datasets.Dataset)
    return ds


# ---------------------------------------------------------------- validation


def _normalize_split(task: TaskSpec, ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """Check every row of one split; keep the text columns + `label` (normalized to ids or floats)."""
    table = ds.with_format("arrow")[:]
    assert isinstance(table, pa.Table)
    found = ", ".join(table.column_names)
    for key in (*task.text_keys, "label"):
        if key not in table.column_names:
            need = ",".join((*task.text_keys, "label"))
            raise DataError(
                f"{where}: column '{key}' is missing (found: {found}); task '{task.name}' needs columns {need}"
            )
    texts = {key: _check_text(table.column(key), key, where) for key in task.text_keys}
    labels = table.column("label").to_pylist()
    if task.is_regression:
        label_array = pa.array(_float_labels(labels, where), pa.float32())
        label_type = datasets.Value("float32")
    else:
        label_array = pa.array(_class_ids(task, labels, where), pa.int64())
        label_type = datasets.Value("int64")
    features = datasets.Features({**{k: datasets.Value("string") for k in texts}, "label": label_type})
    return datasets.Dataset.from_dict({**texts, "label": label_array}, features=features)


def _row(mask: pa.ChunkedArray | pa.Array) -> int:
    """1-based data row of the first True in `mask`."""
    return int(np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))[0]) + 1


def _check_text(column: pa.ChunkedArray, key: str, where: str) -> pa.Array:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"{where}: column '{key}' holds {column.type}, not text; write its values as strings")
    column = column.cast(pa.string())
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)
    if pc.any(blank).as_py():
        raise DataError(f"{where}, row {_row(blank)}: column '{key}' is empty; fill it or drop the row")
    return column.combine_chunks()


def _label_lookup(task: TaskSpec) -> dict[str, int]:
    """Accepted spellings of each class: its name (any case) and its id."""
    lookup = {name.lower(): i for i, name in enumerate(task.label_names)}
    lookup.update({str(i): i for i in range(task.num_labels)})
    return lookup


def _class_id(value: object, lookup: dict[str, int]) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):  # JSON 1.0, or an int column with nulls read back as floats
        return lookup.get(str(int(value))) if value.is_integer() else None
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        # datasets' JSON reader stores a column mixing names and ids as JSON text: '"neutral"', '2'.
        text = text[1:-1]
    return lookup.get(text.strip().lower())


def _class_ids(task: TaskSpec, labels: list[Any], where: str) -> list[int]:
    lookup = _label_lookup(task)
    cache: dict[tuple[type, object], int | None] = {}
    ids: list[int] = []
    for row, value in enumerate(labels, start=1):
        key = (type(value), value)
        if key not in cache:
            cache[key] = _class_id(value, lookup)
        found = cache[key]
        if found is None:
            raise DataError(_bad_label_message(task, value, where, row))
        ids.append(found)
    return ids


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _bad_label_message(task: TaskSpec, value: object, where: str, row: int) -> str:
    if _is_blank(value):
        return f"{where}, row {row}: column 'label' is empty; fill it or drop the row"
    names = ", ".join(task.label_names)
    return (
        f"{where}, row {row}: label {value!r} is unknown for task '{task.name}'; use one of {names} "
        f"or an id 0..{task.num_labels - 1} (unlabeled test files cannot be used)"
    )


def _float_labels(labels: list[Any], where: str) -> list[float]:
    scores: list[float] = []
    for row, value in enumerate(labels, start=1):
        score = _to_float(value)
        if score is None:
            what = "is empty" if _is_blank(value) else f"{value!r} is not a number"
            raise DataError(f"{where}, row {row}: column 'label' {what}; write a similarity score like 3.8")
        scores.append(score)
    return scores


def _to_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


# ---------------------------------------------------------------- tokenization and batching


def tokenize_splits(
    raw: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    max_seq_length: int,
    pad_to_max_length: bool,
) -> datasets.DatasetDict:
    """Token ids + `labels` + `example_id` (row position, the key into cached teacher logits) per split."""
    padding = "max_length" if pad_to_max_length else False

    def encode(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, Any]:
        texts = [batch[key] for key in task.text_keys]
        encoded = dict(tokenizer(*texts, truncation=True, max_length=max_seq_length, padding=padding))
        encoded["labels"] = batch["label"]
        encoded["example_id"] = indices
        return encoded

    out: dict[str, datasets.Dataset] = {}
    with _quiet():
        for split, ds in raw.items():
            # In memory, never from a stale cache file: tokenizer or length changes must always take effect.
            out[split] = ds.map(
                encode,
                batched=True,
                with_indices=True,
                remove_columns=ds.column_names,
                load_from_cache_file=False,
                keep_in_memory=True,
                desc=f"tokenize {split}",
            )
            out[split] = out[split].cast_column("example_id", datasets.Value("int64"))
    return datasets.DatasetDict(out)


def make_collator(
    tokenizer: PreTrainedTokenizerBase, pad_to_max_length: bool
) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Batches of torch tensors: stacked when pre-padded, else padded to the longest row of the batch."""
    from transformers import DataCollatorWithPadding, default_data_collator

    if pad_to_max_length:
        return default_data_collator
    return DataCollatorWithPadding(tokenizer)


def select_first(ds: datasets.Dataset, n: int | None) -> datasets.Dataset:
    """The first `n` rows (all when `n` is None or larger): deterministic, unlike a shuffled sample."""
    if n is None or n >= ds.num_rows:
        return ds
    if n < 1:
        raise PruneofaError(f"max samples {n}: must be at least 1; pass a positive number or leave it unset")
    return ds.select(range(n))


def split_fingerprint(ds: datasets.Dataset) -> str:
    """sha256 over every column's values, in row order: the same content gives the same key in any process.

    Hashing the tokenized split also covers the tokenizer, max length and padding, which the reference's
    teacher logits cache key forgot.
    """
    h = hashlib.sha256()
    h.update(json.dumps([ds.num_rows, sorted(ds.column_names)]).encode())
    for batch in ds.with_format("arrow").iter(batch_size=_HASH_BATCH):
        assert isinstance(batch, pa.Table)
        for name in sorted(batch.column_names):
            _hash_array(h, batch.column(name).combine_chunks())
    return h.hexdigest()


def _hash_array(h: Any, arr: pa.Array) -> None:
    """Feed values (not buffers, whose layout depends on slicing and chunking) into `h`."""
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        h.update(pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        _hash_array(h, pc.list_flatten(arr))
    elif (pa.types.is_integer(t) or pa.types.is_floating(t)) and arr.null_count == 0:
        dtype = np.float64 if pa.types.is_floating(t) else np.int64
        h.update(arr.to_numpy(zero_copy_only=False).astype(dtype).tobytes())
    else:  # strings and anything rarer: their Python values, as JSON
        h.update(json.dumps(arr.to_pylist(), ensure_ascii=False, default=str).encode())
