"""The `pruneofa` command line: options -> config -> library call. The only place that exits.

Flags are spelled as in the reference script (`--task_name`); dashed aliases (`--task-name`) work too.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pruneofa.commands import deploy, measure, pipeline, sparsify, train
from pruneofa.core.errors import PruneofaError

app = typer.Typer(
    name="pruneofa",
    help=(
        "Prune Once For All: fine-tune a sparse pre-trained transformer with pattern lock + distillation "
        "(stage 1), then int8 quantization-aware training (stage 2).\n\n"
        "Typical flow: `pruneofa train` (dense teacher), `pruneofa sparsify` (sparse student), "
        "`pruneofa train --do_prune --do_distillation` (stage 1), the same with `--do_quantization --resume` "
        "(stage 2), `pruneofa export` (ONNX + OpenVINO, verified), `pruneofa bench` and `pruneofa gate`.\n\n"
        "All of it from one recipe: `pruneofa pipeline` (offline default: `make demo`)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    local_rank: Annotated[
        int | None,
        typer.Option("--local_rank", "--local-rank", hidden=True, help="Set by torch.distributed.launch; ignored."),
    ] = None,
) -> None:
    # `python -m torch.distributed.launch ... $(which pruneofa) train ...` puts --local-rank=N before the command;
    # the rank itself is read from the LOCAL_RANK environment variable, which the launcher also sets.
    del local_rank


# In the order a user runs them.
app.command()(train.train)
app.command()(sparsify.sparsify)
app.command()(pipeline.pipeline)
app.command()(deploy.export)
app.command()(deploy.bundle)
app.command("eval")(deploy.eval_)
app.command()(deploy.predict)
app.command()(measure.bench)
app.command()(measure.gate)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv, prog_name="pruneofa")
    except PruneofaError as exc:
        from pruneofa.training.distributed import rank_label

        typer.echo(f"error: {rank_label()}{exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
