"""`pruneofa predict`: label + probabilities from an export folder with onnxruntime or OpenVINO and `tokenizers`,
never importing torch or transformers; tokenization identical to transformers'."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_error

from pruneofa.cli import main
from pruneofa.core.errors import DataError
from pruneofa.runtime.predict import Predictor, parse_row

NAMES = ["input_ids", "attention_mask", "token_type_ids"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An fp32 export folder of the built-in tiny-bert with rotten_tomatoes labels (no training needed)."""
    from pruneofa.data.tasks import get_task
    from pruneofa.export.exporter import _write_openvino
    from pruneofa.export.layout import write_config_and_tokenizer
    from pruneofa.export.to_onnx import export_onnx
    from pruneofa.models.loading import load_classifier, load_tokenizer, resolve_model

    root = tmp_path_factory.mktemp("predict")
    path = resolve_model("tiny-bert")
    model = load_classifier(path, get_task("rotten_tomatoes")).eval()
    model.save_pretrained(root / "src")
    load_tokenizer(path).save_pretrained(root / "src")
    out = root / "bundle"
    out.mkdir()
    write_config_and_tokenizer(root / "src", out, max_length=16)
    export_onnx(model, out / "model.onnx", "fp32", NAMES)
    _write_openvino(out / "model.onnx", out)
    from pruneofa.export.layout import file_entries, write_manifest

    write_manifest(out, {"task_name": "rotten_tomatoes", "files": file_entries(out)})  # predict checks the files
    return out


def predict_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pruneofa", "predict", *args], capture_output=True, text=True, input=stdin, timeout=300
    )


def test_single_text_and_pair(bundle: Path) -> None:
    done = predict_cli(str(bundle), "a gripping, funny film")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["label"] in ("negative", "positive")
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    pair = predict_cli(str(bundle), "first", "second", "--engine", "openvino")
    assert pair.returncode == 0, pair.stderr
    assert set(json.loads(pair.stdout)["probabilities"]) == {"negative", "positive"}


def test_jsonl_batches_keep_order_and_match_single_calls(bundle: Path) -> None:
    rows = [{"text": "good"}, {"sentence": "bad " * 50}, {"premise": "a", "hypothesis": "b"}, "just a string"]
    stdin = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    done = predict_cli(str(bundle), "--batch_size", "3", stdin=stdin)
    assert done.returncode == 0, done.stderr
    batched = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(batched) == len(rows)
    predictor = Predictor(bundle)
    for row, got in zip(rows, batched, strict=True):
        text, pair = parse_row(json.dumps(row), "test")
        alone = predictor.predict([(text, pair)])[0]  # padding inside a batch must not change the answer
        assert alone["label"] == got["label"]
        for label, p in alone["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_engines_agree(bundle: Path) -> None:
    rows = [("the best film of the year", None), ("a", "b c d")]
    ort = Predictor(bundle, "onnxruntime").predict(rows)
    ov = Predictor(bundle, "openvino").predict(rows)
    for a, b in zip(ort, ov, strict=True):
        assert a["label"] == b["label"]
        assert np.allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)


def test_tokenization_equals_transformers(bundle: Path) -> None:
    from transformers import AutoTokenizer

    rows = [("Hello there, a long review " * 10, None), ("short", "and a pair of texts"), ("x", None)]
    ours = Predictor(bundle).encode(rows)
    tokenizer = AutoTokenizer.from_pretrained(str(bundle))
    for i, (text, pair) in enumerate(rows):
        want = tokenizer(text, pair, truncation=True)  # model_max_length (16) from the bundle's config
        n = len(want["input_ids"])
        assert n <= 16
        for name in NAMES:
            assert ours[name][i, :n].tolist() == want[name], (name, i)
        assert ours["attention_mask"][i, n:].sum() == 0


def test_no_torch_or_transformers_imported(bundle: Path) -> None:
    """The whole CLI path of predict, in a fresh interpreter, then a look at what got imported."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['pruneofa', 'predict', {str(bundle)!r}, 'hello world']\n"
        "try:\n    runpy.run_module('pruneofa', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = {'torch', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ok" and '"label"' in done.stdout


def test_parse_row_keys() -> None:
    assert parse_row('{"text": "a", "text_pair": "b"}', "x") == ("a", "b")
    assert parse_row('{"question1": "a", "question2": "b"}', "x") == ("a", "b")
    assert parse_row('{"question": "q", "sentence": "s"}', "x") == ("q", "s")
    assert parse_row('{"sentence": "s"}', "x") == ("s", None)
    assert parse_row('"raw"', "x") == ("raw", None)
    with pytest.raises(DataError, match="line 3: no text field"):
        parse_row('{"review": "a"}', "stdin line 3")
    with pytest.raises(DataError, match="not JSON"):
        parse_row("{oops", "stdin line 1")


def test_bad_stdin_row_is_one_error_line(
    bundle: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "fine"}\n{"txt": "typo"}\n'))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(bundle)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: stdin line 2: no text field") and not any("Traceback" in e for e in err)


def test_not_an_export_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "missing"), "hi"])
    assert "no such folder" in capsys.readouterr().err


# ---------------------------------------------------------------- input that is not UTF-8 text


def test_non_utf8_text_argument(bundle: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pruneofa", "predict", str(bundle), b"caf\xe9 au lait"],
        capture_output=True,
        timeout=300,
    )
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    assert done.returncode == 2, err
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("error: the text argument") and "byte 0xe9 at offset 3" in err[0] and "UTF-8" in err[0]


def _stdin_bytes(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_non_utf8_stdin_line(bundle: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin_bytes(monkeypatch, b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(SystemExit) as done:
        main(["predict", str(bundle)])
    assert done.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: stdin line 2: byte 0xe9 at offset 13") and "UTF-8" in err[0]
    assert captured.out == ""  # nothing printed: the row is refused before its batch runs


def test_lone_surrogate_in_a_json_row(
    bundle: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin_bytes(monkeypatch, b'{"text": "ok \\udce9"}\n')
    line = cli_error(capsys, "predict", str(bundle))
    assert line.startswith("error: stdin line 1:") and "'text'" in line and "UTF-8" in line


def test_non_utf8_text_pair_argument_in_process(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # what Python makes of undecodable argv bytes: lone surrogates (surrogateescape)
    line = cli_error(capsys, "predict", str(bundle), "fine", b"na\xefve".decode("utf-8", "surrogateescape"))
    assert line.startswith("error: the text_pair argument") and "byte 0xef at offset 2" in line


# ---------------------------------------------------------------- pairs only for pair models


def _with_text_fields(bundle: Path, tmp_path: Path, fields: list[str] | None) -> Path:
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if fields is None:
        manifest.pop("text_fields", None)  # an export made before manifests recorded it
    else:
        manifest["text_fields"] = fields
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_pair_refused_for_a_single_sentence_model(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    single = _with_text_fields(bundle, tmp_path, ["sentence"])
    line = cli_error(capsys, "predict", str(single), "first", "second")
    assert line.startswith("error: the text_pair argument") and "single sentences" in line and "sentence" in line
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "ok"}\n{"premise": "a", "hypothesis": "b"}\n'))
    line = cli_error(capsys, "predict", str(single))
    assert line.startswith("error: stdin line 2:") and "single sentences" in line
    with pytest.raises(DataError, match="row 2"):
        Predictor(single).predict([("a", None), ("b", "c")])
    assert Predictor(single).predict([("a", None)])[0]["label"] in ("negative", "positive")


def test_missing_pair_refused_for_a_pair_model(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = _with_text_fields(bundle, tmp_path, ["premise", "hypothesis"])
    line = cli_error(capsys, "predict", str(pairs), "only one text")
    assert line.startswith("error: the text argument") and "premise, hypothesis" in line and "as text_pair" in line
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"premise": "a", "hypothesis": "b"}\n{"text": "alone"}\n'))
    line = cli_error(capsys, "predict", str(pairs))
    assert line.startswith("error: stdin line 2:") and "text_pair" in line
    assert len(Predictor(pairs).predict([("a", "b")])) == 1


def test_export_without_text_fields_keeps_accepting_both(bundle: Path, tmp_path: Path) -> None:
    old = _with_text_fields(bundle, tmp_path, None)
    assert len(Predictor(old).predict([("a", None), ("b", "c")])) == 2
