"""`pruneofa pipeline`: the whole flow from one recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pruneofa.commands.options import check_output_folder, on_interrupt, opt


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
    overwrite_output_dir: Annotated[
        bool,
        opt(
            "--overwrite_output_dir",
            help="Replace step folders (teacher/, stage1/, ...) under --output_dir that this pipeline did not make "
            "(by default the run refuses to touch them).",
        ),
    ] = False,
) -> None:
    """The whole flow in one command: teacher, sparse student (prune-once), stage 1, stage 2, export, eval, bench,
    gate, report. Finished steps are skipped on a re-run; changed ones are redone; a killed run continues."""
    from pruneofa import load_recipe, run_pipeline
    from pruneofa.data.loading import named_files

    check_output_folder(output_dir, "--output_dir")
    chosen = load_recipe(recipe)
    on_interrupt(lambda args: _interrupted(output_dir, args))
    data = chosen.data
    with named_files({"[data] train_file": data.train_file, "[data] validation_file": data.validation_file}):
        state = run_pipeline(
            chosen,
            output_dir,
            dry_run=dry_run,
            no_cuda=no_cuda,
            say=lambda line: typer.echo(line, err=True),
            overwrite_output_dir=overwrite_output_dir,
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


def _interrupted(output_dir: Path, args: list[str]) -> str:
    import shlex

    return (
        f"finished steps are recorded in {output_dir / 'pipeline.json'}; run the same command again to continue "
        f"(finished steps are skipped, an interrupted training step continues from its checkpoint): "
        f"{shlex.join(['pruneofa', *args])}"
    )
