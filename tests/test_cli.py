"""The CLI's contract with its user: exit codes (0 done, 1 gate failed, 2 input error, 3 a bug, 130 Ctrl-C), one
line per failure, arguments checked before any work, and help that never cuts a flag name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import cli_error

from pruneofa.cli import main

TRAIN = ["train", "--task_name", "rotten_tomatoes", "--model_name_or_path", "tiny-bert", "--no_cuda"]


def run_main(*args: str) -> int | str | None:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code


def raiser(exc: BaseException, before: Callable[[], None] = lambda: None) -> Callable[..., Any]:
    def fake(*args: Any, **kwargs: Any) -> Any:
        before()
        raise exc

    return fake


# ---------------------------------------------------------------- --help


def command_flags() -> dict[str, list[str]]:
    import typer.main

    from pruneofa.cli import app

    group = typer.main.get_command(app)
    return {
        name: [o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts if o.startswith("--")]
        for name, cmd in group.commands.items()  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("command", ["train", "sparsify", "pipeline", "export", "eval", "predict", "bench", "gate"])
def test_help_at_80_columns_shows_every_flag_whole(command: str) -> None:
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "pruneofa", command, "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    flags = command_flags()[command]
    assert flags
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", done.stdout), (flag, done.stdout)


def test_train_help_lists_the_long_names() -> None:
    flags = command_flags()["train"]
    for flag in ("--gradient_accumulation_steps", "--resume_from_checkpoint", "--per_device_train_batch_size"):
        assert flag in flags


def test_dashed_spellings_still_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[Any] = []
    monkeypatch.setattr("pruneofa.gate", lambda cfg: seen.append(cfg) or [])
    assert run_main("gate", "--min-accuracy", "0.5", "--max-accuracy-drop", "0.1") in (0, None)
    assert seen[0].rules["accuracy"] == {"min": 0.5, "max_drop": 0.1}


# ---------------------------------------------------------------- a bug: exit 3 and a log file


def test_unexpected_error_exits_3_with_a_log_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("pruneofa.training.stage.train", raiser(RuntimeError("boom in the loop")))
    assert run_main(*TRAIN, "--output_dir", str(tmp_path / "o")) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "RuntimeError: boom in the loop" in err[0] and "bug" in err[0]
    logs = list((tmp_path / "cache" / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in err[0]
    text = logs[0].read_text()
    assert "Traceback" in text and "boom in the loop" in text and "train --task_name rotten_tomatoes" in text


def test_unexpected_error_in_a_light_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("pruneofa.gate", raiser(KeyError("accuracy")))
    assert run_main("gate", "--min_accuracy", "0.5") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KeyError: 'accuracy'" in err[0] and str(tmp_path / "cache" / "logs") in err[0]


def test_unwritable_log_folder_still_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PRUNEOFA_CACHE", str(blocker))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr("pruneofa.gate", raiser(ValueError("bad state")))
    assert run_main("gate", "--min_accuracy", "0.5") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ValueError: bad state" in err[0] and str(tmp_path / "tmp") in err[0], err


def test_input_errors_and_gate_failures_keep_their_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pruneofa.core.errors import PruneofaError

    monkeypatch.setattr("pruneofa.gate", raiser(PruneofaError("--eval x.json: no such file")))
    assert cli_error(capsys, "gate", "--min_accuracy", "0.5") == "error: --eval x.json: no such file"


# ---------------------------------------------------------------- Ctrl-C: exit 130 and what was kept


def test_interrupted_train_names_its_checkpoint_and_the_command_that_continues(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"

    def save_a_checkpoint() -> None:
        (out / "checkpoints" / "last").mkdir(parents=True)
        (out / "checkpoints" / "last" / "state.json").write_text("{}")

    monkeypatch.setattr("pruneofa.training.stage.train", raiser(KeyboardInterrupt(), save_a_checkpoint))
    assert run_main(*TRAIN, "--output_dir", str(out)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    line = err[0]
    assert line.startswith("interrupted") and str(out / "checkpoints" / "last") in line
    assert "pruneofa train --task_name rotten_tomatoes" in line
    assert line.endswith(f"--output_dir {out} --resume_from_checkpoint {out}")


def test_interrupted_train_before_any_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("pruneofa.training.stage.train", raiser(KeyboardInterrupt()))
    out = tmp_path / "run"
    assert run_main(*TRAIN, "--output_dir", str(out)) == 130
    line = capsys.readouterr().err.strip()
    assert line.startswith("interrupted") and "no training state was saved yet" in line and "\n" not in line


def test_interrupted_resumed_train_keeps_its_resume_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    (out / "checkpoints" / "last").mkdir(parents=True)
    (out / "checkpoints" / "last" / "state.json").write_text("{}")
    monkeypatch.setattr("pruneofa.training.stage.train", raiser(KeyboardInterrupt()))
    assert run_main(*TRAIN, "--output_dir", str(out), "--resume-from-checkpoint", str(out)) == 130
    line = capsys.readouterr().err.strip()
    assert "--resume_from_checkpoint" not in line and line.endswith(f"--resume-from-checkpoint {out}"), line


def test_interrupted_pipeline_says_a_rerun_continues(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("pruneofa.run_pipeline", raiser(KeyboardInterrupt()))
    out = tmp_path / "p"
    assert run_main("pipeline", "--output_dir", str(out)) == 130
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("interrupted")
    assert "finished steps are skipped" in line and f"pruneofa pipeline --output_dir {out}" in line


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ("pruneofa.gate", ["gate", "--min_accuracy", "0.5"]),
        ("pruneofa.evaluate", ["eval", "m", "--task_name", "rotten_tomatoes"]),
        ("pruneofa.export_model", ["export", "m", "--output_dir", "x"]),
    ],
)
def test_interrupted_other_commands_left_nothing_partial(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: str, args: list[str]
) -> None:
    monkeypatch.setattr(target, raiser(KeyboardInterrupt()))
    assert run_main(*args) == 130
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("interrupted") and "nothing partial" in line


# ---------------------------------------------------------------- arguments checked before any work


def test_eval_output_that_is_a_folder_is_refused_before_the_eval(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr("pruneofa.evaluate", lambda *a: calls.append(a) or {"validation": {}})
    line = cli_error(capsys, "eval", str(tmp_path), "--task_name", "rotten_tomatoes", "--output", str(tmp_path))
    assert "--output" in line and "is a folder" in line and not calls
    (tmp_path / "file").write_text("x")
    line = cli_error(
        capsys, "eval", str(tmp_path), "--task_name", "rotten_tomatoes", "--output", str(tmp_path / "file" / "m.json")
    )
    assert "--output" in line and "not a folder" in line and not calls


def test_pipeline_output_dir_that_is_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr("pruneofa.run_pipeline", lambda *a, **k: calls.append(a))
    file = tmp_path / "out"
    file.write_text("not a folder")
    line = cli_error(capsys, "pipeline", "--output_dir", str(file), "--dry_run")
    assert "--output_dir" in line and "is a file" in line and not calls
    line = cli_error(capsys, "pipeline", "--output_dir", str(file / "inner"))
    assert "--output_dir" in line and "not a folder" in line and not calls
    assert file.read_text() == "not a folder"


def test_train_output_dir_below_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("pruneofa.training.stage.train", raiser(AssertionError("must not run")))
    (tmp_path / "f").write_text("x")
    line = cli_error(capsys, *TRAIN, "--output_dir", str(tmp_path / "f" / "run"))
    assert "--output_dir" in line and "not a folder" in line


@pytest.mark.parametrize("backend", ["mpi2", "gloo2", ""])
def test_unknown_ddp_backend_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: str
) -> None:
    monkeypatch.setattr("pruneofa.training.stage.train", raiser(AssertionError("must not run")))
    line = cli_error(capsys, *TRAIN, "--output_dir", str(tmp_path / "o"), "--ddp_backend", backend)
    assert f"--ddp_backend {backend!r}" in line and "gloo, nccl, mpi" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("backend", ["gloo", "nccl", "mpi", "NCCL"])
def test_torch_backends_are_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: str) -> None:
    seen: list[Any] = []

    class Result:
        best_epoch, best_metrics, output_dir, is_main = 0, {}, tmp_path, True

    monkeypatch.setattr("pruneofa.training.stage.train", lambda cfg, rt: seen.append(cfg) or Result())
    assert run_main(*TRAIN, "--output_dir", str(tmp_path / "o"), "--ddp_backend", backend) in (0, None)
    assert seen


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ("pruneofa.sparsify", ["sparsify", "tiny-bert"]),
        ("pruneofa.export_model", ["export", "model"]),
        ("pruneofa.benchmark", ["bench", "int8", "--baseline", "fp32"]),
    ],
)
def test_output_dirs_below_a_file_are_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, target: str, args: list[str]
) -> None:
    monkeypatch.setattr(target, raiser(AssertionError("must not run")))
    (tmp_path / "f").write_text("x")
    line = cli_error(capsys, *args, "--output_dir", str(tmp_path / "f" / "out"))
    assert f"--output_dir {tmp_path / 'f' / 'out'}: {tmp_path / 'f'} is not a folder" in line


def test_bundle_output_that_is_a_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("pruneofa.bundle", raiser(AssertionError("must not run")))
    folder = tmp_path / "b.tar.gz"
    folder.mkdir()
    line = cli_error(capsys, "bundle", str(tmp_path), "--output", str(folder))
    assert "--output" in line and "is a folder" in line


def test_interrupted_predict_says_how_far_it_got(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("pruneofa.Predictor", raiser(KeyboardInterrupt()))
    assert run_main("predict", str(tmp_path), "some text") == 130
    line = capsys.readouterr().err.strip()
    assert line.startswith("interrupted: 0 prediction(s) were printed") and "\n" not in line


def test_a_backend_this_torch_lacks_is_refused_under_a_launcher(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import torch.distributed as dist

    monkeypatch.setattr("pruneofa.training.stage.train", raiser(AssertionError("must not run")))
    monkeypatch.setattr(dist, "is_mpi_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    line = cli_error(capsys, *TRAIN, "--output_dir", str(tmp_path / "o"), "--ddp_backend", "mpi")
    assert line.startswith("error: [rank 1] --ddp_backend mpi: this torch build has no mpi support")


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ("pruneofa.evaluate", ["eval", "m", "--task_name", "rotten_tomatoes"]),
        ("pruneofa.Predictor", ["predict", "m", "text"]),
    ],
)
def test_zero_threads_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: str, args: list[str]
) -> None:
    monkeypatch.setattr(target, raiser(AssertionError("must not run")))
    assert cli_error(capsys, *args, "--threads", "0").startswith("error: --threads 0: must be at least 1")
