"""`pruneofa sparsify`: a sparse starting point from a dense model (task-agnostic), or from the fine-tuned teacher
(`--method task`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pruneofa.commands.options import check_output_folder, opt
from pruneofa.core.errors import PruneofaError


def sparsify(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Dense model: folder, Hub id or built-in name (minilm-l6, tiny-bert). Leave it out with --method "
            "task (the student is the --teacher's copy).",
            show_default=False,
        ),
    ] = None,
    *,
    output_dir: Annotated[Path, opt("--output_dir", help="Where the sparse model folder is written.")],
    sparsity_level: Annotated[float, opt("--sparsity", help="Fraction of zeros per layer, e.g. 0.9.")] = 0.9,
    method: Annotated[
        str,
        opt(
            "--method",
            help="magnitude (one shot), obs (one shot, reconstruction-based: OBS / SparseGPT per layer on "
            "--text_file activations), gradual (cubic schedule + hidden-state distillation from the dense model "
            "on --text_file) or task (cubic schedule on the --teacher fine-tuned on the task, head kept, distilling "
            "its logits + hidden states on the task's training text and transfer set).",
        ),
    ] = "magnitude",
    text_file: Annotated[
        str | None,
        opt(
            "--text_file",
            help="Unlabeled text, one per line, or 'rotten_tomatoes' "
            "(built-in: plot summaries + train snippets, never dev/test).",
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        opt("--teacher", help="task: the dense teacher fine-tuned on the task (a `pruneofa train` --output_dir)."),
    ] = None,
    task_name: Annotated[
        str | None, opt("--task_name", help="task: the task (default: the one the teacher was trained on).")
    ] = None,
    train_file: Annotated[Path | None, opt("--train_file", help="task: training data (csv/tsv/json/jsonl).")] = None,
    validation_file: Annotated[
        Path | None, opt("--validation_file", help="task: dev data; never distilled on (nor any text equal to it).")
    ] = None,
    max_train_samples: Annotated[
        int | None, opt("--max_train_samples", help="task: use the first N training rows.")
    ] = None,
    transfer_set: Annotated[
        bool,
        opt(
            "--transfer_set/--no_transfer_set",
            help="task: add the task's unlabeled rows and augmented copies of the training text (masked, dropped, "
            "swapped words, n-grams; never a dev/test text) for the teacher to label.",
        ),
    ] = True,
    pruner: Annotated[
        str,
        opt(
            "--pruner",
            help="task: what picks the weights at each pruning event: magnitude (|w|), obs (reconstruction, "
            "slower) or taylor (running |w x gradient| of the distillation loss).",
        ),
    ] = "magnitude",
    allocation: Annotated[
        str,
        opt(
            "--allocation",
            help="task with --pruner taylor: layer (every layer at --sparsity) or global (one ranking over all "
            "layers sets each layer's share; --sparsity overall, each layer keeps >= 2%).",
        ),
    ] = "layer",
    temperature: Annotated[float, opt("--temperature", help="task: distillation temperature T (KL x T^2).")] = 2.0,
    hidden_weight: Annotated[
        float, opt("--hidden_weight", help="task: weight of the hidden-state MSE beside the logits' KL.")
    ] = 1.0,
    block: Annotated[
        int,
        opt(
            "--block",
            help="Prune N consecutive input features of a row together (magnitude or taylor; not obs): "
            "1 = unstructured; 4 fills the sparse int8 kernel's 4-wide groups (about 3x fewer VNNI instructions "
            "at 90%) at some accuracy cost.",
        ),
    ] = 1,
    block_rows: Annotated[
        int,
        opt(
            "--block_rows",
            help="... and M consecutive output features with them (blocks of M x N): 1 = rows apart; 16 with "
            "--block 4 lets the sparse kernel skip whole blocks of 16 outputs: measured at 90%, BERT-base b1 "
            "2.2-2.4x the best dense engine with AMX and 8.5x without (unstructured: 1.5x, 3.4x), for ~1.2 "
            "points more accuracy drop (demo budget and full split; NOTES.md, issue 14).",
        ),
    ] = 1,
    steps: Annotated[int, opt("--steps", help="gradual, task: optimizer steps in all.")] = 600,
    prune_every: Annotated[int, opt("--prune_every", help="gradual, task: steps between pruning events.")] = 20,
    learning_rate: Annotated[float, opt("--learning_rate", help="gradual, task: AdamW learning rate.")] = 5e-5,
    batch_size: Annotated[int, opt("--batch_size", help="gradual, task: texts per step.")] = 32,
    max_seq_length: Annotated[int, opt("--max_seq_length", help="gradual, task: truncate texts to this.")] = 128,
    seed: Annotated[int, opt("--seed", help="gradual, task: shuffling, augmentation and init seed.")] = 0,
    overwrite_output_dir: Annotated[bool, opt("--overwrite_output_dir", help="Replace an existing folder.")] = False,
) -> None:
    """Make a sparse starting point for stage 1: from a dense pre-trained model (one-shot magnitude or OBS, or the
    gradual prune-once step distilling its hidden states on unlabeled text), or from the dense teacher fine-tuned on
    the task (--method task: gradual, distilling the teacher's logits on the task's text + a transfer set)."""
    from pruneofa import GradualConfig, SparsifyConfig
    from pruneofa import sparsify as run_sparsify
    from pruneofa.compress.task_prune import TaskPruneConfig

    task_flags = {"--teacher": teacher, "--task_name": task_name, "--train_file": train_file,
                  "--validation_file": validation_file, "--max_train_samples": max_train_samples}  # fmt: skip
    given = [flag for flag, value in task_flags.items() if value is not None]
    if method != "task" and given:
        raise PruneofaError(
            f"{given[0]}: only read by --method task, not --method {method}; pass --method task or leave {given[0]} out"
        )
    schedule = GradualConfig(target=sparsity_level, steps=steps, prune_every=prune_every, learning_rate=learning_rate,
                             batch_size=batch_size, max_seq_length=max_seq_length, seed=seed)  # fmt: skip
    task = None
    if method == "task" and teacher is not None:  # without --teacher, SparsifyConfig says what is missing
        task = TaskPruneConfig(teacher=teacher, task_name=task_name, train_file=train_file,
                               validation_file=validation_file, max_train_samples=max_train_samples,
                               transfer_set=transfer_set, pruner=pruner, temperature=temperature,  # type: ignore[arg-type]  # validated by TaskPruneConfig
                               hidden_weight=hidden_weight, allocation=allocation)  # type: ignore[arg-type]  # fmt: skip
    cfg = SparsifyConfig(output_dir=output_dir, sparsity=sparsity_level, method=method, text_file=text_file,  # type: ignore[arg-type]  # validated by SparsifyConfig
                         schedule=schedule, overwrite_output_dir=overwrite_output_dir, task=task,
                         block=block, block_rows=block_rows)  # fmt: skip
    check_output_folder(output_dir, "--output_dir")
    report = run_sparsify(model, cfg)
    for name, row in report["layers"].items():
        typer.echo(f"{row['sparsity']:7.2%}  {name}")
    gap = report.get("held_out_hidden_mse")
    against = "teacher" if method == "task" else "dense"
    typer.echo(
        f"overall sparsity {report['overall']:.2%} over {len(report['layers'])} layers ({method})"
        + (f", held-out hidden-state MSE vs {against} {gap:.4f}" if gap is not None else "")
        + f" -> {output_dir}"
    )
    if method == "task":
        typer.echo(_task_summary(report))


def _task_summary(report: dict[str, Any]) -> str:
    """One line: the transfer set's size, held-out agreement with the teacher, dev scores of teacher and student."""
    counts = report["transfer_set"]
    line = (
        f"distilled on {report['distilled_on']} texts (train {counts['train']}, unlabeled {counts['unlabeled']}, "
        f"augmented {counts['augmented']}); held-out KD loss {report['held_out_kd_loss']:.4f}"
    )
    if "held_out_agreement" in report:
        line += f", agreement with the teacher {report['held_out_agreement']:.2%}"
    dev = report.get("dev")
    if dev:
        metric = next(iter(dev["teacher"]))
        line += f"; dev {metric}: teacher {dev['teacher'][metric]:.4f}, student {dev['student'][metric]:.4f}"
    return line
