"""`pruneofa pipeline` end to end on the tiny model: run, skip on re-run, redo what changed, continue after a kill."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import folder_digest
from pruneofa.pipeline.recipe import load_recipe, parse_recipe, shipped_recipes

pytestmark = pytest.mark.slow

TINY_RECIPE = """
name = "tiny"
[data]
task_name = "rotten_tomatoes"
max_seq_length = 32
batch_size = 16
seed = 3
max_train_samples = 64
max_eval_samples = 64
[teacher]
model = "tiny-bert"
epochs = 1
learning_rate = 1e-3
[student]
dense_model = "tiny-bert"
sparsity = 0.8
method = "gradual"
text_file = "rotten_tomatoes"
steps = 8
prune_every = 2
batch_size = 8
[stage1]
epochs = {stage1_epochs}
learning_rate = 1e-3
[stage2]
epochs = 1
learning_rate = 1e-4
[bench]
batch_sizes = [1]
seq_len = 32
duration = 0.3
iterations = 5
[gate.accuracy]
min = {min_accuracy}
[gate.speedup]
min = {{ "onnxruntime-b1" = 0.01 }}
"""


def write_recipe(folder: Path, min_accuracy: float = 0.0, stage1_epochs: int = 1) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY_RECIPE.format(min_accuracy=min_accuracy, stage1_epochs=stage1_epochs))
    return path


def pipeline(recipe: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pruneofa", "pipeline", "--recipe", str(recipe), "--output_dir", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_shipped_recipes_validate() -> None:
    assert {"default", "sst2", "mnli", "qqp", "qnli"} <= set(shipped_recipes())
    for name in shipped_recipes():
        recipe = load_recipe(name)
        assert recipe.stage1.loss_weights == (0.0, 1.0) and recipe.stage2.pad_to_max_length
    sst2 = load_recipe("sst2")
    assert sst2.student.path == "Intel/bert-base-uncased-sparse-90-unstructured-pruneofa"
    assert (sst2.stage1.learning_rate, sst2.stage1.epochs, sst2.stage2.learning_rate) == (1e-4, 9, 1e-5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[stage1]\nepochs = 2\nlr = 1", "unknown key 'lr'"),
        ("[nonsense]\na = 1", "unknown section [nonsense]"),
        ("[data]\ntask_name = 'sst3'", "sst3"),
        ("[gate.speedup]\nmin = 2", "must map names to limits"),
        ("[data\n", "not valid TOML"),
    ],
)
def test_bad_recipes_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(PruneofaError, match=message.replace("[", r"\[")):
        parse_recipe(text, "r.toml")


def test_dry_run_validates_without_running(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "pruneofa", "pipeline", "--recipe", "qqp", "--dry_run", "--output_dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "would run" in done.stderr and not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    recipe = write_recipe(root)
    done = pipeline(recipe, root / "out")
    assert done.returncode == 0, done.stderr[-4000:]
    return recipe, root / "out"


def test_every_step_ran_and_the_report_reads_their_outputs(finished: tuple[Path, Path]) -> None:
    _, out = finished
    state = json.loads((out / "pipeline.json").read_text())
    assert list(state["steps"]) == ["teacher", "student", "stage1", "stage2", "export-int8", "export-fp32", "bundle",
                                    "bench", "gate"]  # fmt: skip
    assert (out / "bundle" / "model.tar.gz").is_file() and "bundle/model.tar.gz" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    teacher_acc = json.loads((out / "teacher" / "pruneofa.json").read_text())["metrics"]["validation"]["accuracy"]
    assert f"| teacher (dense, torch) | {100 * teacher_acc:.2f} |" in report
    assert "**Verdict: PASS**" in report and (out / "accuracy.png").stat().st_size > 0
    assert json.loads((out / "student" / "sparsity.json").read_text())["method"] == "gradual"
    assert json.loads((out / "export-int8" / "manifest.json").read_text())["precision"] == "int8"


def test_rerun_skips_and_a_changed_gate_reruns_only_the_gate(finished: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, out = finished
    again = pipeline(recipe, out)
    assert again.returncode == 0
    assert again.stderr.count("done, skipped") == 9  # every step, the bundle included
    strict = write_recipe(tmp_path, min_accuracy=1.0)  # only a perfect score passes: the gate fails
    failed = pipeline(strict, out)
    assert failed.returncode == 1
    assert failed.stderr.count("done, skipped") == 8 and "gate        running" in failed.stderr
    assert "gate failed: accuracy.min" in failed.stderr
    changed = write_recipe(tmp_path, stage1_epochs=2)
    redone = pipeline(changed, out)
    assert redone.returncode == 0
    for step in ("teacher", "student"):
        assert f"{step:<11} done, skipped" in redone.stderr
    for step in ("stage1", "stage2", "export-int8", "bench", "gate"):
        assert f"{step:<11} running" in redone.stderr
    assert "export-fp32 done, skipped" in redone.stderr  # it depends on the teacher only


def test_a_corrupt_done_step_is_remade_and_so_is_what_read_it(finished: tuple[Path, Path], tmp_path: Path) -> None:
    """Runs after the test above on the same finished pipeline (file order), whose last run had 2 stage-1 epochs."""
    _, out = finished
    recipe = write_recipe(tmp_path, stage1_epochs=2)
    before = json.loads((out / "pipeline.json").read_text())["steps"]
    weights = out / "stage2" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of the weights: the folder is no longer what the step made
    weights.write_bytes(bytes(data))
    again = pipeline(recipe, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stage2      running" in again.stderr
    for step in ("teacher", "student", "stage1", "export-fp32"):
        assert f"{step:<11} done, skipped" in again.stderr
    after = json.loads((out / "pipeline.json").read_text())["steps"]
    if after["stage2"]["digest"] != before["stage2"]["digest"]:  # a new stage 2 -> everything that read it is new
        for step in ("export-int8", "bundle", "bench", "gate"):
            assert f"{step:<11} running" in again.stderr, step
    for name, record in after.items():  # every recorded digest is what is on disk now
        assert record["digest"] == folder_digest(out / record["output"]), name


def test_user_folders_are_never_deleted(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    out = tmp_path / "out"
    (out / "teacher").mkdir(parents=True)
    (out / "teacher" / "my_notes.txt").write_text("mine")
    (out / "bench").mkdir()
    done = pipeline(recipe, out)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert str(out / "teacher") in line and str(out / "bench") in line and "--overwrite_output_dir" in line
    assert (out / "teacher" / "my_notes.txt").read_text() == "mine" and not (out / "pipeline.json").exists()
    cmd = [sys.executable, "-m", "pruneofa", "pipeline", "--recipe", str(recipe), "--output_dir", str(out)]
    dry = subprocess.run([*cmd, "--dry_run"], capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and "teacher     would refuse" in dry.stderr and "bench       would refuse" in dry.stderr
    assert "stage1      would run" in dry.stderr
    forced = subprocess.run([*cmd, "--dry_run", "--overwrite_output_dir"], capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0 and "teacher     would run" in forced.stderr
    assert (out / "teacher" / "my_notes.txt").exists()


def test_output_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    (tmp_path / "out").write_text("not a folder")
    done = pipeline(recipe, tmp_path / "out")
    assert done.returncode == 2 and "is a file" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "out").read_text() == "not a folder"


def test_fingerprints_cover_the_content_of_user_files(tmp_path: Path) -> None:
    from pruneofa.pipeline.runner import _content_fingerprint, _external_inputs
    from pruneofa.pipeline.step import Step

    train = tmp_path / "train.csv"
    train.write_text("sentence,label\ngood,1\n")
    recipe = dataclasses.replace(
        load_recipe(None), data=dataclasses.replace(load_recipe(None).data, train_file=str(train))
    )
    step = Step("teacher", {"x": 1}, tmp_path / "teacher", lambda: {})
    first = _content_fingerprint(step, [step], {"steps": {}}, _external_inputs(recipe))
    train.write_text("sentence,label\nbad,0\n")  # same name, same recipe, other content
    assert _content_fingerprint(step, [step], {"steps": {}}, _external_inputs(recipe)) != first


def test_killed_pipeline_continues(tmp_path: Path) -> None:
    # Many short epochs: on a fast machine a 3-epoch stage 1 finished between two polls, and the kill then
    # landed in a later step, so "continuing" was never said for stage 1.
    recipe = write_recipe(tmp_path, stage1_epochs=12)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pruneofa", "pipeline", "--recipe", str(recipe), "--output_dir", str(out)]
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=quiet, stderr=quiet, start_new_session=True)
    checkpoint = out / "stage1" / "checkpoints" / "last" / "state.json"
    deadline = time.monotonic() + 600
    try:
        while not checkpoint.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "stage 1 never checkpointed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    epochs_done = json.loads(checkpoint.read_text())["position"]["epoch"]
    assert epochs_done < 12, f"stage 1 ran all its epochs ({epochs_done}) before the kill; the test needs more"
    resumed = pipeline(recipe, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "teacher     done, skipped" in resumed.stderr and "stage1      continuing" in resumed.stderr
    assert "continuing from" in resumed.stderr  # the training step picked up its own checkpoint
    assert (out / "report.md").exists()
