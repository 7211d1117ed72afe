"""Vocabulary trimming for edge bundles: keep the WordPiece tokens a corpus uses (plus every special token), give
them new consecutive ids, and keep only their rows of the word-embedding table.

Why it is safe for the corpus: WordPiece matches the longest vocabulary piece first, and a subset that keeps every
piece a word used keeps that word's longest matches, so corpus text tokenizes exactly as before (same tokens,
renumbered). Text outside the corpus may need a dropped piece: WordPiece then maps the whole word to [UNK], the
behaviour of any out-of-vocabulary word. Off by default; the export's dev check measures what it costs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.core.files import read_json


def used_token_ids(tokenizer_json: dict[str, Any], texts: list[str]) -> np.ndarray:
    """Sorted ids of the tokens `texts` use, every added/special token, and [UNK]."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    ids: set[int] = {int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}
    unk = tokenizer.token_to_id(tokenizer_json["model"].get("unk_token", "[UNK]"))
    if unk is not None:
        ids.add(unk)
    for start in range(0, len(texts), 1024):
        for encoding in tokenizer.encode_batch(texts[start : start + 1024], add_special_tokens=False):
            ids.update(encoding.ids)
    return np.array(sorted(ids), dtype=np.int64)


def trimmed_tokenizer(tokenizer_json: dict[str, Any], kept: np.ndarray) -> dict[str, Any]:
    """tokenizer.json with only the `kept` old ids, renumbered 0..len(kept)-1 in their old order."""
    model = tokenizer_json.get("model", {})
    if model.get("type") != "WordPiece":
        from pruneofa.core.errors import ModelError

        raise ModelError(f"vocabulary trimming supports WordPiece tokenizers (BERT family), not {model.get('type')}")
    new_id = {int(old): new for new, old in enumerate(kept.tolist())}
    out = copy.deepcopy(tokenizer_json)
    out["model"]["vocab"] = {tok: new_id[i] for tok, i in model["vocab"].items() if i in new_id}
    for token in out.get("added_tokens", []):
        token["id"] = new_id[int(token["id"])]
    special = (out.get("post_processor") or {}).get("special_tokens") or {}
    for entry in special.values():
        entry["ids"] = [new_id[int(i)] for i in entry.get("ids", [])]
    return out


def trimmed_tokenizer_config(config: dict[str, Any], kept: np.ndarray) -> dict[str, Any]:
    """tokenizer_config.json with its `added_tokens_decoder` ids renumbered (if it has one)."""
    new_id = {int(old): new for new, old in enumerate(kept.tolist())}
    out = dict(config)
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        out["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id}
    return out


def vocab_txt(tokenizer_json: dict[str, Any]) -> str:
    """vocab.txt for a (trimmed) WordPiece tokenizer: one token per line, in id order."""
    vocab = tokenizer_json["model"]["vocab"]
    return "".join(f"{tok}\n" for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1]))


def trim_word_embeddings_(proto: Any, kept: np.ndarray) -> dict[str, Any]:
    """Keep only the `kept` rows of the table that the `input_ids` Gather reads (in place)."""
    from onnx import numpy_helper

    from pruneofa.core.errors import ModelError

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    tables = {n.input[0] for n in graph.node if n.op_type == "Gather" and n.input[1] == "input_ids"}
    tables &= set(inits)
    if len(tables) != 1:
        raise ModelError("vocabulary trimming: the graph has no single word-embedding Gather reading input_ids")
    name = tables.pop()
    table = numpy_helper.to_array(inits[name])
    graph.initializer.remove(inits[name])
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(table[kept]), name))
    return {"table": name, "rows_before": int(table.shape[0]), "rows_after": int(kept.size)}


def trim_folder_vocabulary_(folder: Path, corpus: str) -> dict[str, Any]:
    """Keep only the tokens `corpus` uses: tokenizer files and the ONNX word-embedding rows, in `folder`."""
    import onnx

    from pruneofa.compress.sparsify import load_texts

    texts = load_texts(corpus, "--trim_vocab")
    tokenizer = read_json(folder / "tokenizer.json")
    kept = used_token_ids(tokenizer, texts)
    trimmed = trimmed_tokenizer(tokenizer, kept)
    (folder / "tokenizer.json").write_text(json.dumps(trimmed, ensure_ascii=False))
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        config = trimmed_tokenizer_config(read_json(tok_config), kept)
        tok_config.write_text(json.dumps(config, indent=2) + "\n")
    if (folder / "vocab.txt").is_file():
        (folder / "vocab.txt").write_text(vocab_txt(trimmed), encoding="utf-8")
    model_config = read_json(folder / "config.json")
    model_config["vocab_size"] = int(kept.size)
    (folder / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    proto = onnx.load(str(folder / "model.onnx"))
    facts = trim_word_embeddings_(proto, kept)
    onnx.save(proto, str(folder / "model.onnx"))
    return {"trimmed": True, "corpus": corpus, "corpus_texts": len(texts), **facts}
