"""The edge runtime: label + probabilities from an export folder with only an inference engine and `tokenizers`.

No torch and no transformers are imported on this path (a test checks `sys.modules`): the folder's
tokenizer.json does the tokenization (truncation at the exported model_max_length, each batch padded to its
longest row, token_type_ids for pairs), which reproduces what transformers feeds the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.core import hardware
from pruneofa.core.errors import DataError, ModelError
from pruneofa.core.files import read_json
from pruneofa.runtime import engine_choice
from pruneofa.runtime.bundle import is_bundle_file, open_bundle
from pruneofa.runtime.engines import EngineName, open_engine
from pruneofa.runtime.manifest import MANIFEST, read_manifest, verify_export

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


def bad_byte(text: str) -> tuple[int, int] | None:
    """(byte, offset) of the first byte of `text` that was not UTF-8, None when it all was.

    Python keeps the undecodable bytes of argv (and of a surrogateescape stream) as lone surrogates
    U+DC80..U+DCFF; another lone surrogate is returned as its code point (above 0xFF)."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        char = ord(text[exc.start])
        offset = len(text[: exc.start].encode("utf-8", "surrogateescape"))
        return (char - 0xDC00 if 0xDC80 <= char <= 0xDCFF else char), offset


def check_text(text: str, where: str) -> None:
    """A DataError naming `where`, the byte and its offset when `text` holds bytes that are not UTF-8."""
    bad = bad_byte(text)
    if bad is not None:
        byte, offset = bad
        what = f"byte 0x{byte:02x}" if byte <= 0xFF else f"lone surrogate U+{byte:04X}"
        raise DataError(
            f"{where}: {what} at offset {offset} is not UTF-8; pass UTF-8 text (convert it with `iconv -t utf-8`)"
        )


def _check_json_text(text: str, where: str) -> None:
    """Strict decoding keeps bad bytes out of a JSON row; an escape like \\udce9 can still make a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise DataError(
            f"{where} holds the escape \\u{code:04x}, a lone surrogate: not a character, so not UTF-8 text; "
            "write the character itself (or a valid surrogate pair)"
        ) from None


def _text_fields(manifest: dict[str, Any] | None, folder: Path) -> tuple[str, ...] | None:
    """The export's text fields (one: single sentences, two: pairs); None for exports that do not record them."""
    fields = (manifest or {}).get("text_fields")
    if fields is None:
        return None
    if not (isinstance(fields, list) and len(fields) in (1, 2) and all(isinstance(f, str) for f in fields)):
        raise ModelError(f"{folder / MANIFEST}: text_fields {fields!r} is not a list of 1 or 2 names; re-export it")
    return tuple(fields)


def _token_text(value: object) -> str | None:
    """A special token from tokenizer_config.json: a string, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class Predictor:
    """Loads an export folder (or a `pruneofa bundle` file, verified and unpacked once into the cache) once;
    `predict` maps rows of (text, optional pair) to label + probabilities."""

    def __init__(
        self, folder: Path, engine: EngineName | None = None, threads: int | None = None, batch_size: int = 1
    ) -> None:
        """`engine` None: the fastest `pruneofa bench` measured for this model on this machine at `batch_size`
        rows per call, else onnxruntime (`self.engine_choice` says which and why)."""
        from tokenizers import Tokenizer

        from_bundle = is_bundle_file(folder)
        if from_bundle:
            folder = open_bundle(folder)  # every member checked against bundle.json when it was unpacked
        if not folder.is_dir():
            raise ModelError(f"{folder}: no such folder; pass a folder written by `pruneofa export` or a bundle file")
        if not from_bundle:
            verify_export(folder)  # the files are the ones the export verified (verdict cached)
        self.text_fields = _text_fields(read_manifest(folder), folder)
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
        if engine is None:
            self.engine_choice = engine_choice.choose(folder, batch_size, hardware.cpu_info())
        else:
            self.engine_choice = engine_choice.Choice(engine, f"{engine}: named by --engine")
        self.engine = open_engine(folder, self.engine_choice.engine, threads=threads)
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

    def row_problem(self, row: Row) -> str | None:
        """Why `row` does not fit this model (a pair for a single-sentence model, or the other way round); None
        when it fits or the export does not record its text fields."""
        fields = self.text_fields
        if fields is None or (row[1] is None) == (len(fields) == 1):
            return None
        if len(fields) == 1:
            return f"a text pair, but this model classifies single sentences (its text field: {fields[0]})"
        return f"one text, but this model classifies text pairs ({', '.join(fields)})"

    def predict(self, rows: list[Row]) -> list[dict[str, Any]]:
        if not rows:
            return []
        for number, row in enumerate(rows, start=1):
            problem = self.row_problem(row)
            if problem:
                fix = "give (text, None) rows" if row[1] is not None else "give (text, pair) rows"
                raise DataError(f"row {number}: {problem}; {fix}")
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
        _check_json_text(data, f"{where}: the text")
        return data, None
    if isinstance(data, dict):
        for first, second in TEXT_KEYS:
            text = data.get(first)
            if isinstance(text, str):
                pair = data.get(second) if second else None
                if pair is not None and not isinstance(pair, str):
                    raise DataError(f"{where}: {second!r} must be a string")
                _check_json_text(text, f"{where}: {first!r}")
                if pair is not None:
                    _check_json_text(pair, f"{where}: {second!r}")
                return text, pair
    keys = ", ".join(f"{a}/{b}" if b else a for a, b in TEXT_KEYS)
    raise DataError(f"{where}: no text field; use one of {keys}")


_JSONL_FIX = {
    "pair": 'send one text per row, e.g. {"text": "..."}',
    "single": 'send both texts, e.g. {"text": "...", "text_pair": "..."}',
}


def read_rows(lines: Iterable[str | bytes], source: str = "stdin", predictor: Predictor | None = None) -> Iterator[Row]:
    """Rows of JSONL `lines` (text, or bytes decoded here so a line that is not UTF-8 is named); with a
    `predictor`, a row that does not fit its model (a pair for a single-sentence model...) is refused."""
    for number, raw in enumerate(lines, start=1):
        where = f"{source} line {number}"
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{where}: byte 0x{raw[exc.start]:02x} at offset {exc.start} of the line is not UTF-8; "
                    "send UTF-8 text (convert it with `iconv -t utf-8`)"
                ) from None
        else:
            line = raw
            check_text(line, where)
        if line.strip():
            row = parse_row(line, where)
            problem = predictor.row_problem(row) if predictor is not None else None
            if problem:
                raise DataError(f"{where}: {problem}; {_JSONL_FIX['pair' if row[1] is not None else 'single']}")
            yield row


def argument_rows(predictor: Predictor, text: str, text_pair: str | None) -> Sequence[Row]:
    """The one row given as the text [text_pair] arguments, checked like a JSONL row."""
    check_text(text, "the text argument")
    if text_pair is not None:
        check_text(text_pair, "the text_pair argument")
    problem = predictor.row_problem((text, text_pair))
    if problem and text_pair is not None:
        raise DataError(f"the text_pair argument: {problem}; leave text_pair out")
    if problem:
        raise DataError(f"the text argument: {problem}; pass the second text as text_pair")
    return [(text, text_pair)]


def predict_stream(predictor: Predictor, rows: Iterable[Row], batch_size: int) -> Iterator[dict[str, Any]]:
    """Predictions in input order, computed `batch_size` rows at a time (one engine call per batch)."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == batch_size:
            yield from predictor.predict(batch)
            batch = []
    yield from predictor.predict(batch)
