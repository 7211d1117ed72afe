"""`pruneofa sparsify`: a sparse pre-trained starting point from a dense model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pruneofa.commands.options import check_output_folder, opt


def sparsify(
    model: Annotated[str, typer.Argument(help="Dense model: folder, Hub id or built-in name (minilm-l6, tiny-bert).")],
    output_dir: Annotated[Path, opt("--output_dir", help="Where the sparse model folder is written.")],
    sparsity_level: Annotated[float, opt("--sparsity", help="Fraction of zeros per layer, e.g. 0.9.")] = 0.9,
    method: Annotated[
        str,
        opt(
            "--method",
            help="magnitude (one shot), obs (one shot, reconstruction-based: OBS / SparseGPT per layer on "
            "--text_file activations) or gradual (cubic schedule + hidden-state distillation from the dense model "
            "on --text_file).",
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
    steps: Annotated[int, opt("--steps", help="gradual: optimizer steps in all.")] = 600,
    prune_every: Annotated[int, opt("--prune_every", help="gradual: steps between pruning events.")] = 20,
    learning_rate: Annotated[float, opt("--learning_rate", help="gradual: AdamW learning rate.")] = 5e-5,
    batch_size: Annotated[int, opt("--batch_size", help="gradual: texts per step.")] = 32,
    max_seq_length: Annotated[int, opt("--max_seq_length", help="gradual: truncate texts to this.")] = 128,
    seed: Annotated[int, opt("--seed", help="gradual: shuffling and init seed.")] = 0,
    overwrite_output_dir: Annotated[bool, opt("--overwrite_output_dir", help="Replace an existing folder.")] = False,
) -> None:
    """Make a sparse pre-trained starting point from a dense model: one-shot magnitude pruning, or the gradual
    prune-once step (cubic schedule while distilling the dense model's hidden states on unlabeled text)."""
    from pruneofa import GradualConfig, SparsifyConfig
    from pruneofa import sparsify as run_sparsify

    schedule = GradualConfig(target=sparsity_level, steps=steps, prune_every=prune_every, learning_rate=learning_rate,
                             batch_size=batch_size, max_seq_length=max_seq_length, seed=seed)  # fmt: skip
    cfg = SparsifyConfig(output_dir=output_dir, sparsity=sparsity_level, method=method, text_file=text_file,  # type: ignore[arg-type]  # validated by SparsifyConfig
                         schedule=schedule, overwrite_output_dir=overwrite_output_dir)  # fmt: skip
    check_output_folder(output_dir, "--output_dir")
    report = run_sparsify(model, cfg)
    for name, row in report["layers"].items():
        typer.echo(f"{row['sparsity']:7.2%}  {name}")
    gap = report.get("held_out_hidden_mse")
    typer.echo(
        f"overall sparsity {report['overall']:.2%} over {len(report['layers'])} layers ({method})"
        + (f", held-out hidden-state MSE vs dense {gap:.4f}" if gap is not None else "")
        + f" -> {output_dir}"
    )
