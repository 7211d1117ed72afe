"""`pruneofa bundle`: one file holding model (sparse int8 weights packed), tokenizer, labels and manifest, each
member checked by sha256; predict/eval run it directly, unpacking only into the cache; every tampering refused."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cli_helpers import cli_error

from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.core.files import sha256_file
from pruneofa.export.bundle import BundleConfig, write_bundle
from pruneofa.runtime import packed
from pruneofa.runtime.bundle import open_bundle
from pruneofa.runtime.predict import Predictor

ROWS = [("a gorgeous, witty, seductive movie", None), ("a dull, lifeless mess", None)]


@pytest.fixture(scope="module")
def bundle_file(tiny_exports: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "model.tar.gz"
    write_bundle(tiny_exports / "int8", BundleConfig(output=out))
    return out


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def rewrite(path: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of bundle `path` with members replaced, added or (None) removed."""
    files = {**members(path), **change}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out.write_bytes(gzip.compress(buffer.getvalue()))
    return out


def test_packing_round_trips_the_exact_file_and_is_smaller(tiny_exports: Path) -> None:
    raw = (tiny_exports / "int8" / "model.onnx").read_bytes()
    skeleton, arrays, facts = packed.pack(raw)
    assert packed.unpack(skeleton, arrays) == raw
    assert facts["tensors"] >= 12 and facts["packed_bytes"] < facts["raw_bytes"] * 0.3  # 90% zeros


def test_packed_sparse_weights_beat_gzip_of_the_raw_int8() -> None:
    """At a real layer shape (768 x 3072, 90% zeros) mask + values compress better than the int8 bytes do."""
    import numpy as np
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    w = np.clip(np.rint(rng.normal(scale=30, size=(768, 3072))), -127, 127).astype(np.int8)
    w[rng.random(w.shape) < 0.9] = 0
    graph = helper.make_graph([], "g", [], [], [numpy_helper.from_array(w, "w")])
    raw = helper.make_model(graph).SerializeToString()
    skeleton, arrays, _ = packed.pack(raw)
    assert packed.unpack(skeleton, arrays) == raw
    assert len(gzip.compress(skeleton + arrays)) < 0.85 * len(gzip.compress(raw))


def test_bundle_lists_every_member_with_its_sha256(bundle_file: Path, tiny_exports: Path) -> None:
    files = members(bundle_file)
    doc = json.loads(files["bundle.json"])
    assert set(files) - {"bundle.json"} == set(doc["members"])
    assert {"config.json", "tokenizer.json", "manifest.json", "README.md", packed.SKELETON_FILE} <= set(files)
    assert "model.onnx" not in files  # shipped packed
    for name, entry in doc["members"].items():
        assert entry["sha256"] == __import__("hashlib").sha256(files[name]).hexdigest()
    assert doc["unpacked"]["model.onnx"]["sha256"] == sha256_file(tiny_exports / "int8" / "model.onnx")
    assert "pruneofa predict model.tar.gz" in files["README.md"].decode()


def test_same_export_gives_the_same_bundle_bytes(bundle_file: Path, tiny_exports: Path, tmp_path: Path) -> None:
    again = write_bundle(tiny_exports / "int8", BundleConfig(output=tmp_path / bundle_file.name))
    assert Path(again["file"]).read_bytes() == bundle_file.read_bytes()


def test_predict_from_the_bundle_equals_the_export(bundle_file: Path, tiny_exports: Path) -> None:
    from_bundle = Predictor(bundle_file).predict(ROWS)
    from_folder = Predictor(tiny_exports / "int8").predict(ROWS)
    assert from_bundle == from_folder


def test_unpacked_once_into_the_cache_and_reused(
    bundle_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = open_bundle(bundle_file, tmp_path)
    assert folder.parent == tmp_path / "bundles" and (folder / "model.onnx").is_file()
    assert not [p for p in (tmp_path / "bundles").iterdir() if p.name.startswith(".")]  # no staging left

    def unreadable(*_: object) -> None:
        raise AssertionError("a verified bundle was read again")

    monkeypatch.setattr("pruneofa.runtime.bundle._read_members", unreadable)
    assert open_bundle(bundle_file, tmp_path) == folder


def test_predict_from_bundle_imports_no_torch(bundle_file: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom pruneofa.runtime.predict import Predictor\n"
        f"p = Predictor(Path({str(bundle_file)!r}))\nprint(p.predict([('fine', None)]))\n"
        "assert not {'torch', 'transformers'} & set(sys.modules), 'torch imported'\n"
    )
    env = {**__import__("os").environ, "PRUNEOFA_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"tokenizer.json": b"{}"}, "does not match its sha256"),
        ({"config.json": None}, "config.json is missing"),
        ({"extra.txt": b"x"}, "not listed"),
        ({"bundle.json": None}, "has no bundle.json"),
        ({"bundle.json": b"not json"}, "not JSON"),
    ],
)
def test_tampered_bundle_refused(bundle_file: Path, tmp_path: Path, change: dict[str, bytes | None], says: str) -> None:
    bad = rewrite(bundle_file, tmp_path / "bad.tar.gz", change)
    with pytest.raises(ModelError, match=says):
        open_bundle(bad, tmp_path / "cache")
    assert not (tmp_path / "cache" / "bundles").exists() or not any((tmp_path / "cache" / "bundles").iterdir())


def test_packed_weights_that_do_not_rebuild_the_model_are_refused(bundle_file: Path, tmp_path: Path) -> None:
    files = members(bundle_file)
    doc = json.loads(files["bundle.json"])
    doc["unpacked"]["model.onnx"]["sha256"] = "0" * 64  # what the export recorded no longer matches
    bad = rewrite(bundle_file, tmp_path / "bad.tar.gz", {"bundle.json": json.dumps(doc).encode()})
    with pytest.raises(ModelError, match=r"unpacked model\.onnx does not match"):
        open_bundle(bad, tmp_path / "cache")


def test_member_outside_the_folder_refused(bundle_file: Path, tmp_path: Path) -> None:
    bad = rewrite(bundle_file, tmp_path / "bad.tar.gz", {"../escape.txt": b"x"})
    with pytest.raises(ModelError, match="not a plain file"):
        open_bundle(bad, tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()


def test_not_a_tarball_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"hello")
    with pytest.raises(ModelError, match=r"not a readable \.tar\.gz"):
        open_bundle(bad, tmp_path / "cache")


def test_changed_export_is_not_bundled(tiny_exports: Path, tmp_path: Path) -> None:
    import shutil

    export = tmp_path / "int8"
    shutil.copytree(tiny_exports / "int8", export)
    (export / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ModelError, match="changed since export"):
        write_bundle(export, BundleConfig(output=tmp_path / "model.tar.gz"))
    assert not (tmp_path / "model.tar.gz").exists()


def test_cli_refusals(capsys: pytest.CaptureFixture[str], bundle_file: Path, tiny_exports: Path) -> None:
    before = bundle_file.read_bytes()
    line = cli_error(capsys, "bundle", str(tiny_exports / "int8"), "-o", str(bundle_file))
    assert "already exists" in line and "--overwrite" in line
    assert bundle_file.read_bytes() == before
    line = cli_error(capsys, "bundle", str(tiny_exports / "int8"), "-o", str(bundle_file.parent / "model.zip"))
    assert "*.tar.gz" in line
    line = cli_error(capsys, "bundle", str(tiny_exports / "nope"), "-o", str(bundle_file.parent / "x.tar.gz"))
    assert "no such folder" in line
    folder = bundle_file.parent / "dir.tar.gz"
    folder.mkdir()
    with pytest.raises(PruneofaError, match="is a folder"):
        write_bundle(tiny_exports / "int8", BundleConfig(output=folder, overwrite=True))


def test_the_sparse_form_is_rebuilt_on_unpacking_at_no_extra_bytes(
    bundle_file: Path, tiny_exports: Path, tmp_path: Path
) -> None:
    export = tiny_exports / "int8"
    assert (export / "model.sparse.onnx").is_file()  # int8 exports write it by default
    files = members(bundle_file)
    doc = json.loads(files["bundle.json"])
    assert "model.sparse.onnx" not in files  # not shipped: rebuilt from model.onnx
    assert doc["unpacked"]["model.sparse.onnx"]["sha256"] == sha256_file(export / "model.sparse.onnx")
    assert "--engine openvino-sparse" in files["README.md"].decode()
    folder = open_bundle(bundle_file, tmp_path)
    assert (folder / "model.sparse.onnx").read_bytes() == (export / "model.sparse.onnx").read_bytes()


def test_a_sparse_form_that_does_not_rebuild_exactly_is_left_out(bundle_file: Path, tmp_path: Path) -> None:
    files = members(bundle_file)
    doc = json.loads(files["bundle.json"])
    doc["unpacked"]["model.sparse.onnx"]["sha256"] = "0" * 64  # e.g. an onnx that serializes differently
    odd = rewrite(bundle_file, tmp_path / "odd.tar.gz", {"bundle.json": json.dumps(doc).encode()})
    folder = open_bundle(odd, tmp_path / "cache")
    assert (folder / "model.onnx").is_file() and not (folder / "model.sparse.onnx").exists()
    assert Predictor(odd).predict(ROWS)  # the other engines are unaffected
    with pytest.raises(ModelError, match=r"no model\.sparse\.onnx.*re-export"):
        Predictor(odd, engine="openvino-sparse")


def test_predict_from_the_bundle_on_the_sparse_engine_equals_the_export(bundle_file: Path, tiny_exports: Path) -> None:
    from pruneofa.runtime.engines import sparse_unavailable

    if problem := sparse_unavailable():
        pytest.skip(problem)
    from_bundle = Predictor(bundle_file, engine="openvino-sparse").predict(ROWS)
    assert from_bundle == Predictor(tiny_exports / "int8", engine="openvino-sparse").predict(ROWS)
