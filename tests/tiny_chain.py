"""The tiny trained chain every end-to-end test reads: teacher -> sparsify -> stage 1 -> stage 2 (QAT) through the
real CLI with the seed's flags, then the int8 export of stage 2 and the fp32 export of the teacher. Built once per
test session (the `tiny_chain` fixture in conftest.py); tests copy what they need to change, never edit it."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import run_cli

DATA = [
    "--task_name",
    "rotten_tomatoes",
    "--max_train_samples",
    "96",
    "--max_eval_samples",
    "64",
    "--max_seq_length",
    "32",
    "--batch_size",
    "16",
    "--seed",
    "5143",
]
EVAL_N = "200"  # dev examples used by the export checks
KD = ["--do_prune", "--do_distillation", "--loss_weights", "0", "1", "--temperature", "2"]


def make_chain(root: Path) -> Path:
    """root/{teacher,student,stage1,stage2} training folders and root/{int8,fp32} exports."""
    teacher, student = ["--teacher_model_name_or_path", str(root / "teacher")], str(root / "student")
    steps = [
        ["train", *DATA, "--model_name_or_path", "tiny-bert", "--learning_rate", "1e-3", "--num_train_epochs", "2",
         "--output_dir", str(root / "teacher")],
        ["sparsify", "tiny-bert", "--sparsity", "0.9", "--output_dir", student],
        ["train", *DATA, "--model_name_or_path", student, *teacher, *KD, "--learning_rate", "1e-3",
         "--num_train_epochs", "2", "--output_dir", str(root / "stage1")],
        ["train", *DATA, "--model_name_or_path", student, *teacher, *KD, "--learning_rate", "1e-4",
         "--num_train_epochs", "1", "--do_quantization", "--resume", str(root / "stage1" / "best_model.pt"),
         "--pad_to_max_length", "--output_dir", str(root / "stage2")],
        ["export", str(root / "stage2"), "--output_dir", str(root / "int8"), "--max_eval_samples", EVAL_N],
        ["export", str(root / "teacher"), "--output_dir", str(root / "fp32"), "--format", "onnx",
         "--max_eval_samples", EVAL_N],
    ]  # fmt: skip
    for step in steps:
        done = run_cli(*step)
        assert done.returncode == 0, f"{step[:2]} failed:\n{done.stderr[-3000:]}"
    return root
