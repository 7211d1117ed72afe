"""Vocabulary trimming: corpus text tokenizes to the same tokens (renumbered) and reads the same embedding rows;
a word outside the corpus becomes [UNK]; special tokens keep working."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from pruneofa.export import vocab
from pruneofa.models.loading import load_tokenizer, resolve_model

CORPUS = ["a gorgeous, witty, seductive movie.", "the plot is a dull mess", "witty and gorgeous"]


def _tokenizer_json() -> dict:  # type: ignore[type-arg]
    """tiny-bert's tokenizer.json as an export writes it (no padding or truncation baked in)."""
    doc = json.loads(load_tokenizer(resolve_model("tiny-bert")).backend_tokenizer.to_str())
    return {**doc, "padding": None, "truncation": None}


def test_corpus_tokenizes_to_the_same_tokens_and_rows() -> None:
    full = _tokenizer_json()
    kept = vocab.used_token_ids(full, CORPUS)
    small = vocab.trimmed_tokenizer(full, kept)
    before, after = Tokenizer.from_str(json.dumps(full)), Tokenizer.from_str(json.dumps(small))
    assert after.get_vocab_size() == kept.size < before.get_vocab_size() / 100
    table = np.arange(before.get_vocab_size() * 2, dtype=np.float32).reshape(-1, 2)
    trimmed_table = table[kept]
    for text in CORPUS:
        old, new = before.encode(text), after.encode(text)
        assert old.tokens == new.tokens  # [CLS] ... [SEP] included
        np.testing.assert_array_equal(trimmed_table[new.ids], table[old.ids])


def test_unknown_word_maps_to_unk_and_specials_are_renumbered() -> None:
    full = _tokenizer_json()
    small = vocab.trimmed_tokenizer(full, vocab.used_token_ids(full, CORPUS))
    tok = Tokenizer.from_str(json.dumps(small))
    encoding = tok.encode("gorgeous zebra")
    assert encoding.tokens == ["[CLS]", "gorgeous", "[UNK]", "[SEP]"]
    assert encoding.ids[0] == tok.token_to_id("[CLS]") and encoding.ids[-1] == tok.token_to_id("[SEP]")
    assert tok.token_to_id("[PAD]") is not None and tok.token_to_id("[MASK]") is not None
    assert vocab.vocab_txt(small).splitlines()[tok.token_to_id("[UNK]")] == "[UNK]"


def test_word_embedding_rows_are_sliced_in_the_graph() -> None:
    table = np.arange(20, dtype=np.float32).reshape(10, 2)
    node = helper.make_node("Gather", ["w", "input_ids"], ["logits"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", 2])],
        [numpy_helper.from_array(table, "w")],
    )
    proto = helper.make_model(graph)
    facts = vocab.trim_word_embeddings_(proto, np.array([0, 3, 7]))
    assert facts == {"table": "w", "rows_before": 10, "rows_after": 3}
    new = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}["w"]
    np.testing.assert_array_equal(new, table[[0, 3, 7]])
    onnx.checker.check_model(proto)
