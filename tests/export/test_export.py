"""`pruneofa export` and `pruneofa eval` end to end: tiny model through QAT -> export -> eval, checked from the files;
and every refusal (one error line, nothing left behind)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import cli_error, run_cli
from safetensors.torch import load_file
from tiny_chain import EVAL_N

from pruneofa.core import hardware
from pruneofa.core.files import sha256_file
from pruneofa.export.layout import gzip_size
from pruneofa.kernels import openvino_op
from pruneofa.runtime.engines import open_engine, ort_optimized_op_counts

DATA = ["--task_name", "rotten_tomatoes", "--max_seq_length", "32", "--batch_size", "16", "--seed", "5143"]
TRAIN = [*DATA, "--max_train_samples", "64", "--max_eval_samples", "64", "--num_train_epochs", "1"]
TASK = ["--task_name", "rotten_tomatoes"]
LINEARS = 14  # tiny-bert: 2 layers x 6 + pooler + classifier


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(*args)
    assert done.returncode == 0, f"{args[:2]} failed:\n{done.stderr[-3000:]}"
    return done


def manifest(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.slow
def test_int8_folder_is_what_loaders_expect(tiny_chain: Path) -> None:
    folder = tiny_chain / "int8"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "model.onnx", "openvino_model.xml"} <= names
    assert "model.sparse.onnx" in names  # the sparse form, for --engine openvino-sparse
    assert "openvino_model.bin" in names and "model.safetensors" not in names
    assert not any(n.startswith(".") for n in {p.name for p in tiny_chain.iterdir()})  # no staging leftovers
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["id2label"] == {"0": "negative", "1": "positive"}
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None and tokenizer["truncation"] is None
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 32


@pytest.mark.slow
def test_manifest_records_every_file(tiny_chain: Path) -> None:
    m = manifest(tiny_chain / "int8")
    on_disk = {p.name for p in (tiny_chain / "int8").iterdir()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    for name, entry in m["files"].items():
        path = tiny_chain / "int8" / name
        assert entry["sha256"] == sha256_file(path) and entry["bytes"] == path.stat().st_size
        assert entry["gzip_bytes"] == gzip_size(path)
    assert m["precision"] == "int8" and m["onnx"]["opset"] == 17 and m["openvino"]["compress_to_fp16"] is False
    assert m["labels"] == {"0": "negative", "1": "positive"} and m["task_name"] == "rotten_tomatoes"
    assert m["source"]["stage"] == "stage2-qat" and "accuracy" in m["source"]["metrics"]["validation"]
    assert {"torch", "onnx", "onnxruntime", "openvino"} <= set(m["versions"])


@pytest.mark.slow
def test_sparsity_in_file_equals_training(tiny_chain: Path) -> None:
    recorded = json.loads((tiny_chain / "stage2" / "pruneofa.json").read_text())["sparsity"]["layers"]
    layers = manifest(tiny_chain / "int8")["sparsity"]["layers"]
    weights = load_file(tiny_chain / "stage2" / "model.safetensors")
    for name, row in recorded.items():  # every pruned layer: same zeros in the int8 file as in torch
        assert layers[name]["dtype"] == "int8"
        assert layers[name]["float_zeros"] == row["zeros"] == int((weights[name] == 0).sum()), name
        # The file's zeros are the QAT int8 weight's: every pruned zero, plus weights that round to 0.
        assert layers[name]["zeros"] >= row["zeros"]
        assert layers[name]["sparsity"] == layers[name]["torch_sparsity"]
    assert len(layers) == LINEARS  # the classifier is in the file too (dense, int8)


@pytest.mark.slow
def test_every_linear_is_int8_in_both_engines(tiny_chain: Path) -> None:
    runtime = manifest(tiny_chain / "int8")["runtime"]
    assert runtime["onnxruntime"]["int8_matmuls"] == runtime["openvino"]["int8_matmuls"] == LINEARS
    # Recounted from the files, not taken from the manifest.
    assert ort_optimized_op_counts(tiny_chain / "int8" / "model.onnx")["MatMulIntegerToFloat"] == LINEARS
    assert open_engine(tiny_chain / "int8", "openvino").describe()["int8_matmuls"] == LINEARS


@pytest.mark.slow
def test_verification_recorded_within_tolerance(tiny_chain: Path) -> None:
    check = manifest(tiny_chain / "int8")["verification"]
    assert check["status"] == "passed" and check["num_examples"] == int(EVAL_N)
    torch_acc = check["torch"]["metrics"]["validation"]["accuracy"]
    for engine in ("onnxruntime", "openvino"):
        assert check[engine]["metrics"]["validation"]["accuracy"] >= torch_acc - 0.005
        assert check[engine]["argmax_agreement"] >= 0.99
    sparse = manifest(tiny_chain / "int8")["sparse_form"]
    assert sparse["written"] and sparse["layers_rewritten"] == LINEARS
    if openvino_op.availability().ok:  # the sparse form: the QDQ model's labels, checked on the same examples
        assert sparse["verification"]["status"] == "passed" and sparse["verification"]["num_examples"] == int(EVAL_N)
        assert check["openvino-sparse"]["vs_qdq"]["argmax_agreement"] >= 0.999
    else:
        assert sparse["verification"]["summary"].startswith("verification skipped: ")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "engine_name"),
    [("openvino_default_precision", "openvino"), ("openvino_sparse_default_precision", "openvino-sparse")],
)
def test_openvino_runs_at_its_default_precision_only_where_export_checked_it(
    tiny_chain: Path, key: str, engine_name: str
) -> None:
    """The int8 IR and the sparse form each run at OpenVINO's default precision only where export's own check of
    that model held (and AMX runs bf16 here), else with the f32 hint."""
    if engine_name == "openvino-sparse" and not openvino_op.availability().ok:
        assert key not in manifest(tiny_chain / "int8")["verification"]  # no sparse run, no check
        return
    check = manifest(tiny_chain / "int8")["verification"][key]
    engine = open_engine(tiny_chain / "int8", engine_name)  # type: ignore[arg-type]  # the default: what export verified
    # Checked wherever OpenVINO's default differs from f32 (bf16 on CPUs with AVX512-BF16 / AMX-BF16).
    assert check["checked"] is (check["precision_used"] != "f32")
    if check["held"] and hardware.amx_runs_bf16(hardware.cpu_info(), os.environ.get("ONEDNN_MAX_CPU_ISA")):
        torch_acc = manifest(tiny_chain / "int8")["verification"]["torch"]["metrics"]["validation"]["accuracy"]
        assert check["metrics"]["validation"]["accuracy"] >= torch_acc - 0.005
        assert 0.0 <= check["label_agreement_with_f32"] <= 1.0
        assert engine.describe()["precision_hint"] is None and engine.describe()["inference_precision"] == "bf16"
    else:
        assert check["held"] or check["reason"]
        assert engine.describe()["inference_precision"] == "f32"
    f32 = open_engine(tiny_chain / "int8", engine_name, precision="f32")  # type: ignore[arg-type]
    assert f32.describe()["inference_precision"] == "f32"
    assert key not in manifest(tiny_chain / "fp32")["verification"]  # int8 only


@pytest.mark.slow
def test_eval_scores_all_three_alike(tiny_chain: Path, tmp_path: Path) -> None:
    """Same metrics JSON from the training folder (torch), the ONNX folder, the IR (OpenVINO) and the sparse form
    (openvino-sparse, where the kernel is built)."""
    scores = {}
    runs = [
        ("torch", tiny_chain / "stage2", []),
        ("onnxruntime", tiny_chain / "int8", []),
        ("openvino", tiny_chain / "int8", ["--engine", "openvino"]),
    ]
    if openvino_op.availability().ok:
        runs.append(("openvino-sparse", tiny_chain / "int8", ["--engine", "openvino-sparse"]))
    for label, target, extra in runs:
        out = tmp_path / f"{label}.json"
        ok("eval", str(target), *TASK, "--max_eval_samples", EVAL_N, *extra, "--output", str(out))
        result = json.loads(out.read_text())
        assert result["engine"]["engine"] == label and result["num_examples"] == {"validation": int(EVAL_N)}
        scores[label] = result["validation"]["accuracy"]
    assert abs(scores["onnxruntime"] - scores["torch"]) <= 0.005
    assert abs(scores["openvino"] - scores["torch"]) <= 0.005
    assert scores.get("openvino-sparse", scores["openvino"]) == scores["openvino"]


@pytest.mark.slow
def test_fp32_export_is_the_dense_baseline(tiny_chain: Path) -> None:
    m = manifest(tiny_chain / "fp32")
    assert m["precision"] == "fp32" and m["formats"] == ["onnx"] and m["openvino"] is None
    assert not (tiny_chain / "fp32" / "openvino_model.xml").exists()
    assert not (tiny_chain / "fp32" / "model.sparse.onnx").exists() and not m["sparse_form"]["written"]
    assert m["runtime"]["onnxruntime"]["int8_matmuls"] == 0
    assert m["verification"]["status"] == "passed"
    assert m["sparsity"]["overall"] < 0.01  # the teacher is dense
    int8, fp32 = manifest(tiny_chain / "int8")["files"], m["files"]
    # The encoder Linears shrink 4x in int8; the tiny model is mostly (float) embeddings, so the file barely does.
    assert int8["model.onnx"]["bytes"] < fp32["model.onnx"]["bytes"]


@pytest.mark.slow
def test_fp32_of_a_qat_model_exports_its_float_weights(tiny_chain: Path, tmp_path: Path) -> None:
    out = tmp_path / "shadow"
    ok(
        "export",
        str(tiny_chain / "stage2"),
        "--output_dir",
        str(out),
        "--precision",
        "fp32",
        "--format",
        "onnx",
        "--max_eval_samples",
        "64",
    )
    m = manifest(out)
    assert m["precision"] == "fp32" and m["verification"]["torch"]["model"] == "fp32"
    assert m["sparsity"]["overall"] == pytest.approx(manifest(tiny_chain / "int8")["sparsity"]["overall"], abs=0.01)


# ---------------------------------------------------------------- refusals


@pytest.mark.slow
def test_int8_of_float_model_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    line = cli_error(capsys, "export", str(tiny_chain / "stage1"), "--output_dir", str(out), "--precision", "int8")
    assert "never went through QAT" in line and not out.exists()


@pytest.mark.slow
def test_missing_tokenizer_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path, tmp_path: Path) -> None:
    source = tmp_path / "stage2"
    shutil.copytree(tiny_chain / "stage2", source)
    (source / "tokenizer.json").unlink()
    line = cli_error(capsys, "export", str(source), "--output_dir", str(tmp_path / "o"))
    assert "missing tokenizer" in line and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_existing_output_dir_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path) -> None:
    before = (tiny_chain / "int8" / "manifest.json").read_text()
    line = cli_error(capsys, "export", str(tiny_chain / "stage2"), "--output_dir", str(tiny_chain / "int8"))
    assert "--overwrite" in line
    assert (tiny_chain / "int8" / "manifest.json").read_text() == before


@pytest.mark.slow
def test_corrupt_input_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path, tmp_path: Path) -> None:
    source = tmp_path / "stage2"
    shutil.copytree(tiny_chain / "stage2", source)
    weights = source / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    line = cli_error(capsys, "export", str(source), "--output_dir", str(tmp_path / "o"))
    assert "model.safetensors" in line and "corrupt" in line and not (tmp_path / "o").exists()


def test_not_a_training_output_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = cli_error(capsys, "export", str(tmp_path), "--output_dir", str(tmp_path / "o"))
    assert "pruneofa.json" in line


def test_bad_format_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = cli_error(capsys, "export", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--format", "tflite")
    assert "tflite" in line


@pytest.mark.slow
def test_failed_verification_leaves_nothing(tiny_chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that scores worse than torch fails the export, with the numbers, and writes no folder."""
    import numpy as np

    from pruneofa import scoring
    from pruneofa.core.errors import PruneofaError
    from pruneofa.export.exporter import ExportConfig, export

    real = scoring.engine_forward

    def flipped(engine):  # type: ignore[no-untyped-def]
        forward = real(engine)
        return lambda feeds: -np.asarray(forward(feeds))  # every prediction inverted

    monkeypatch.setattr(scoring, "engine_forward", flipped)
    out = tmp_path / "o"
    cfg = ExportConfig(output_dir=out, formats=("onnx",), max_eval_samples=int(EVAL_N))
    with pytest.raises(PruneofaError, match=r"verification failed.*onnxruntime accuracy"):
        export(tiny_chain / "stage2", cfg)
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


@pytest.mark.slow
def test_eval_engine_mismatch_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path) -> None:
    line = cli_error(capsys, "eval", str(tiny_chain / "stage2"), *TASK, "--engine", "openvino")
    assert "pruneofa export" in line
    line = cli_error(capsys, "eval", str(tiny_chain / "int8"), "--task_name", "sst2", "--engine", "onnxruntime")
    assert "rotten_tomatoes" in line


# ---------------------------------------------------------------- edge: int8 embeddings, vocabulary, bundle


@pytest.mark.slow
def test_int8_export_has_int8_embeddings_checked_on_dev(tiny_chain: Path) -> None:
    import onnx

    emb = manifest(tiny_chain / "int8")["embeddings"]
    assert emb["dtype"] == "int8" and emb["checked"] is True
    assert emb["main_metric_int8"] >= emb["main_metric_float"] - emb["tolerance"]
    word = emb["tables"]["model.bert.embeddings.word_embeddings.weight"]
    assert word["shape"] == [30522, 32] and word["bytes_int8"] < word["bytes_float"] / 3
    graph = onnx.load(str(tiny_chain / "int8" / "model.onnx")).graph
    dtypes = {t.name: t.data_type for t in graph.initializer}
    assert dtypes["model.bert.embeddings.word_embeddings.weight.int8"] == onnx.TensorProto.INT8
    assert "model.bert.embeddings.word_embeddings.weight" not in dtypes
    assert manifest(tiny_chain / "fp32")["embeddings"] == {"dtype": "float32", "reason": "fp32 export"}


@pytest.mark.slow
def test_int8_embeddings_that_cost_accuracy_are_not_kept(
    tiny_chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pruneofa.data import metrics
    from pruneofa.export.exporter import ExportConfig, export

    real, calls = metrics.main_metric_value, []

    def int8_tables_lose(task, scores):  # type: ignore[no-untyped-def]
        calls.append(1)  # the embedding check scores twice (float tables, int8 tables), then verification runs
        return {1: 0.9, 2: 0.5}.get(len(calls), real(task, scores))

    monkeypatch.setattr(metrics, "main_metric_value", int8_tables_lose)
    cfg = ExportConfig(output_dir=tmp_path / "o", formats=("onnx",), max_eval_samples=int(EVAL_N))
    emb = export(tiny_chain / "stage2", cfg)["embeddings"]
    assert emb["dtype"] == "float32" and "cost" in emb["reason"]
    assert emb["main_metric_int8"] < emb["main_metric_float"] - emb["tolerance"]
    assert sha256_file(tmp_path / "o" / "model.onnx") == manifest(tmp_path / "o")["files"]["model.onnx"]["sha256"]
    plain = ExportConfig(output_dir=tmp_path / "f", formats=("onnx",), verify=False, int8_embeddings=False)
    assert export(tiny_chain / "stage2", plain)["embeddings"] == {"dtype": "float32", "reason": "--float_embeddings"}


@pytest.mark.slow
def test_bundle_scores_exactly_as_its_export(tiny_chain: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "model.tar.gz"
    ok("bundle", str(tiny_chain / "int8"), "-o", str(bundle))
    results = {}
    for label, target in (("export", tiny_chain / "int8"), ("bundle", bundle)):
        out = tmp_path / f"{label}.json"
        ok("eval", str(target), *TASK, "--max_eval_samples", EVAL_N, "--output", str(out))
        results[label] = json.loads(out.read_text())
    assert results["bundle"]["validation"] == results["export"]["validation"]
    assert results["bundle"]["model"] == str(bundle)
    done = run_cli("predict", str(bundle), "a gorgeous, witty, seductive movie")
    assert done.returncode == 0 and json.loads(done.stdout)["label"] in ("negative", "positive")


@pytest.mark.slow
def test_trimmed_vocabulary_export(tiny_chain: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a gorgeous, witty, seductive movie\nthe plot is a dull mess\n")
    out = tmp_path / "trimmed"
    ok("export", str(tiny_chain / "stage2"), "--output_dir", str(out), "--format", "onnx", "--trim_vocab",
       str(corpus), "--max_eval_samples", EVAL_N, "--tolerance", "1")  # fmt: skip
    m = manifest(out)
    assert m["vocabulary"]["trimmed"] and m["vocabulary"]["rows_after"] < 40
    assert json.loads((out / "config.json").read_text())["vocab_size"] == m["vocabulary"]["rows_after"]
    done = run_cli("predict", str(out), "gorgeous zebra")  # zebra is not in the corpus: [UNK], still a label
    assert done.returncode == 0, done.stderr
    # Corpus text reads the same embedding rows as before trimming: the same logits as the untrimmed export.
    from pruneofa.runtime.predict import Predictor

    rows = [("a gorgeous, witty, seductive movie", None), ("the plot is a dull mess", None)]
    assert m["embeddings"]["dtype"] == manifest(tiny_chain / "int8")["embeddings"]["dtype"]
    assert Predictor(out).predict(rows) == Predictor(tiny_chain / "int8").predict(rows)


@pytest.mark.slow
def test_a_model_trained_from_files_is_verified_on_its_own_dev_file(tmp_path: Path) -> None:
    rows = [("a gorgeous, witty movie", 1), ("a dull mess", 0), ("great fun", 1), ("boring and long", 0)] * 6
    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    train.write_text("sentence,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    dev.write_text("sentence,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows[:10]))
    files = ["--train_file", str(train), "--validation_file", str(dev)]
    model = tmp_path / "model"
    ok("train", "--task_name", "sst2", *files, "--model_name_or_path", "tiny-bert", "--max_seq_length", "16",
       "--num_train_epochs", "1", "--output_dir", str(model))  # fmt: skip
    recorded = json.loads((model / "pruneofa.json").read_text())["data_files"]
    assert recorded["validation_file"] == {"path": str(dev.resolve()), "sha256": sha256_file(dev)}
    ok("export", str(model), "--output_dir", str(tmp_path / "e1"), "--format", "onnx")  # no --validation_file
    check = manifest(tmp_path / "e1")["verification"]
    assert check["status"] == "passed" and check["num_examples"] == 10
    dev.write_text(dev.read_text() + '"one more",1\n')  # changed since training: refused, not silently used
    done = run_cli("export", str(model), "--output_dir", str(tmp_path / "e2"), "--format", "onnx")
    assert done.returncode == 2 and "has changed since" in done.stderr and not (tmp_path / "e2").exists()
    dev.unlink()  # gone: the export says loudly that it was not verified
    done = ok("export", str(model), "--output_dir", str(tmp_path / "e3"), "--format", "onnx")
    assert "WARNING: the export was NOT verified" in done.stderr
    assert manifest(tmp_path / "e3")["verification"]["status"] == "skipped"
