"""The `pruneofa` command line: options -> config -> library call. The only place that exits.

Exit codes: 0 done, 1 a gate failed, 2 an input error (one `error: ...` line), 3 a bug (one line naming it and the
log file holding its traceback), 130 interrupted (one line saying what was kept and the command that continues).
Flags are spelled as in the reference script (`--task_name`); the dashed spelling (`--task-name`) works too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from pruneofa.commands import deploy, measure, pipeline, sparsify, train
from pruneofa.commands.options import clear_interrupt_note, interrupt_note, normalize_flag
from pruneofa.core.errors import PruneofaError


class Interrupted(BaseException):
    """Ctrl-C inside a command, carried past Typer (which would turn it into a silent exit 130) to `main`."""


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click.Context
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted() from exc


app = typer.Typer(
    name="pruneofa",
    cls=_Group,
    help=(
        "Prune Once For All: fine-tune a sparse pre-trained transformer with pattern lock + distillation "
        "(stage 1), then int8 quantization-aware training (stage 2).\n\n"
        "Typical flow: `pruneofa train` (dense teacher), `pruneofa sparsify` (sparse student), "
        "`pruneofa train --do_prune --do_distillation` (stage 1), the same with `--do_quantization --resume` "
        "(stage 2), `pruneofa export` (ONNX + OpenVINO, verified), `pruneofa bench` and `pruneofa gate`.\n\n"
        "All of it from one recipe: `pruneofa pipeline` (offline default: `make demo`).\n\n"
        "Every --flag_name may also be spelled --flag-name."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help (no rich panels): its option column never cuts a flag name, at any terminal width; a long name
    # gets its own line with the help text below it.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "token_normalize_func": normalize_flag},
)


@app.callback()
def _root(
    local_rank: Annotated[
        int | None,
        typer.Option("--local_rank", hidden=True, help="Set by torch.distributed.launch; ignored."),
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


def _rank_label() -> str:
    """'[rank N] ' inside a multi-process job (read from the launcher's environment without importing torch)."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE", "1")
    return f"[rank {rank}] " if rank is not None and world.isdigit() and int(world) > 1 else ""


def _write_crash_log(exc: BaseException, args: list[str]) -> Path | None:
    """The traceback of an unexpected error, in a timestamped file under the cache dir (else the temp dir)."""
    import datetime
    import platform
    import shlex
    import tempfile
    import traceback

    from pruneofa import __version__
    from pruneofa.core.cache import default_cache_dir

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"crash-{stamp}-{os.getpid()}.log"
    text = (
        f"pruneofa {__version__}, Python {platform.python_version()} on {platform.platform()}\n"
        f"command: pruneofa {shlex.join(args)}\n"
        f"rank: {os.environ.get('RANK', '-')} of {os.environ.get('WORLD_SIZE', '1')}\n\n"
        + "".join(traceback.format_exception(exc))
    )
    for folder in (default_cache_dir() / "logs", Path(tempfile.gettempdir()) / "pruneofa-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8", errors="backslashreplace")
            return folder / name
        except OSError:
            continue
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every way out is one line on stderr and an exit code of its own, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    clear_interrupt_note()
    try:
        app(args=args, prog_name="pruneofa")
    except PruneofaError as exc:
        typer.echo(f"error: {_rank_label()}{exc}", err=True)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt):
        typer.echo(f"interrupted: {_rank_label()}{interrupt_note(args)}", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: the user gets one line and the log file to report
        log = _write_crash_log(exc, args)
        what = (str(exc).strip().splitlines() or [""])[0]
        where = f"the traceback is in {log}" if log else "no log file could be written"
        typer.echo(
            f"internal error: {_rank_label()}{type(exc).__name__}: {what} (a bug in pruneofa, not in your input; "
            f"{where}: please report it with that file)",
            err=True,
        )
        if log is None:
            import traceback

            traceback.print_exception(exc)
        sys.exit(3)
