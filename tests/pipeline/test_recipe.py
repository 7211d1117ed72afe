"""Recipe values are checked at the edge: every key against its field's type, the file as UTF-8 TOML, and
`pipeline --dry_run` builds every step's config so their own validation runs before anything does."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import cli_error

from pruneofa.core.errors import PruneofaError
from pruneofa.pipeline.recipe import load_recipe, parse_recipe


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[teacher]\nlearning_rate = "fast"', ["teacher.learning_rate", '"fast"', "a string", "a number"]),
        ('[stage1]\nepochs = "1"', ["stage1.epochs", '"1"', "a string", "an integer"]),
        ("[data]\ntask_name = 5", ["data.task_name", "= 5", "an integer", "a string"]),
        ('[bench]\nbatch_sizes = ["a"]', ["bench.batch_sizes", '["a"]', "a list of integers"]),
        ("[data]\nbatch_size = 1.5", ["data.batch_size", "1.5", "a float", "an integer", "batch_size = 32"]),
        # bool is not an int, an int is not a bool
        ("[data]\nseed = true", ["data.seed", "true", "a boolean", "an integer"]),
        ("[stage2]\npad_to_max_length = 1", ["stage2.pad_to_max_length", "true or false"]),
        ("[stage1]\nloss_weights = [1.0]", ["stage1.loss_weights", "[1.0]", "a list of 2 numbers"]),
        ("[stage1]\nloss_weights = [[0], [1]]", ["stage1.loss_weights", "a list of 2 numbers"]),
        ('[export]\nformats = "onnx"', ["export.formats", '"onnx"', "a list of strings"]),
        ("[student]\ntext_file = 3", ["student.text_file", "a string"]),
        ("[data]\nmax_train_samples = 0.5", ["data.max_train_samples", "an integer", "or leave the key out"]),
        ("[teacher]\nlearning_rate = nan", ["teacher.learning_rate", "nan", "finite"]),
        ("[bench]\nduration = inf", ["bench.duration", "inf", "finite"]),
        ("[data]\nmax_seq_length = 1979-05-27", ["data.max_seq_length", "a date", "an integer"]),
        ("name = 5", ["name = 5", "a string"]),
        ("gate = 5", ["gate = 5", "a table"]),
    ],
)
def test_wrong_types_name_key_value_and_expected_type(text: str, words: list[str]) -> None:
    with pytest.raises(PruneofaError) as info:
        parse_recipe(text, "r.toml")
    message = str(info.value)
    assert message.startswith("r.toml") and "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_ints_are_accepted_as_floats_and_become_floats() -> None:
    recipe = parse_recipe("[teacher]\nlearning_rate = 1\n[stage1]\nloss_weights = [0, 1]\n[bench]\nduration = 2", "r")
    assert recipe.teacher.learning_rate == 1.0 and isinstance(recipe.teacher.learning_rate, float)
    assert recipe.stage1.loss_weights == (0.0, 1.0) and all(isinstance(w, float) for w in recipe.stage1.loss_weights)
    assert isinstance(recipe.bench.duration, float)
    assert recipe.bench.batch_sizes == (1, 8)  # untouched defaults keep their types


def test_non_utf8_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(PruneofaError, match=r"latin1\.toml: not UTF-8 \(byte 0xe9 at offset 11, line 1\)"):
        load_recipe(str(path))
    line = cli_error(capsys, "pipeline", "--recipe", str(path), "--dry_run", "--output_dir", str(tmp_path / "out"))
    assert "latin1.toml" in line and "0xe9" in line and "UTF-8" in line


def test_recipe_that_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "r.toml"
    folder.mkdir()
    with pytest.raises(PruneofaError, match="no such file"):
        load_recipe(str(folder))


TINY = """
[data]
max_train_samples = 8
[teacher]
model = "tiny-bert"
[student]
dense_model = "tiny-bert"
"""


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("[data]\nbatch_size = 1.5", ["data.batch_size", "1.5"]),  # used to pass --dry_run and crash later
        ("[bench]\nseq_len = 0", ["[bench]", "--seq_len 0"]),  # BenchConfig's own check
        ("[bench]\nthreads = 0", ["[bench]", "--threads 0"]),
        ("[stage1]\ntemperature = 0.0", ["[stage1]", "temperature must be > 0"]),  # DistillConfig
        ("[stage2]\nloss_weights = [0.0, 0.0]", ["[stage2]", "loss_weights"]),
        ("[student]\nsteps = 0", ["[student]", "--steps"]),  # GradualConfig
        ("[data]\nmax_eval_samples = 0", ["[data]", "--max_eval_samples 0"]),  # TrainConfig / ExportConfig
        ('[data]\ntrain_file = "missing.csv"', ["[data] train_file", "missing.csv", "no such file"]),
        ('[data]\nvalidation_file = "dev.txt"', ["[data] validation_file", "dev.txt", ".jsonl"]),
        ('[student]\ntext_file = "missing.txt"', ["[student] text_file", "missing.txt", "no such file"]),
    ],
)
def test_dry_run_catches_what_a_real_run_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, words: list[str]
) -> None:
    recipe = tmp_path / "r.toml"
    sections = TINY.split("\n[")
    # merge `extra` into the tiny recipe (a section may appear once in TOML)
    head, body = extra.split("\n", 1)
    merged = [s if not ("[" + s).startswith(head) else s + "\n" + body for s in sections]
    text = "\n[".join(merged)
    if head not in text:
        text += "\n" + extra
    recipe.write_text(text + "\n")
    out = tmp_path / "out"
    line = cli_error(capsys, "pipeline", "--recipe", str(recipe), "--dry_run", "--output_dir", str(out))
    for word in words:
        assert word in line, (word, line)
    assert not out.exists()


def test_dry_run_of_a_good_recipe_still_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pruneofa.cli import main

    recipe = tmp_path / "r.toml"
    recipe.write_text(TINY)
    with pytest.raises(SystemExit) as done:
        main(["pipeline", "--recipe", str(recipe), "--dry_run", "--output_dir", str(tmp_path / "out")])
    assert done.value.code in (0, None)
    captured = capsys.readouterr()
    assert "is valid; nothing was run" in captured.out and "would run" in captured.err
    assert not (tmp_path / "out").exists()
