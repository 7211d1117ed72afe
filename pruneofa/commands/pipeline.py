"""`pruneofa pipeline`: the whole flow from one recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pruneofa.commands.options import opt


def pipeline(
    recipe: Annotated[
        str | None,
        opt("--recipe", help="A recipe .toml, or a shipped one: default (offline, built-in), sst2, mnli, qqp, qnli."),
    ] = None,
    output_dir: Annotated[Path, opt("--output_dir", help="Where every step's folder and report.md go.")] = Path(
        "runs/pipeline"
    ),
    dry_run: Annotated[bool, opt("--dry_run", help="Validate the recipe and list the steps; run nothing.")] = False,
    no_cuda: Annotated[bool, opt("--no_cuda", help="Train on CPU even if CUDA is available.")] = False,
) -> None:
    """The whole flow in one command: teacher, sparse student (prune-once), stage 1, stage 2, export, eval, bench,
    gate, report. Finished steps are skipped on a re-run; changed ones are redone; a killed run continues."""
    from pruneofa import load_recipe, run_pipeline

    chosen = load_recipe(recipe)
    state = run_pipeline(
        chosen, output_dir, dry_run=dry_run, no_cuda=no_cuda, say=lambda line: typer.echo(line, err=True)
    )
    if dry_run:
        typer.echo(f"recipe {chosen.name!r} is valid; nothing was run")
        return
    gate = state["steps"].get("gate", {}).get("summary") or {}
    typer.echo(f"report: {output_dir / 'report.md'}")
    if gate and not gate.get("passed"):
        for line in gate.get("failures", []):
            typer.echo(f"gate failed: {line}", err=True)
        raise typer.Exit(1)
