"""Option helpers shared by the commands: flags spelled as in the reference (`--flag_name`), checks of output
paths made before any work, and what to tell the user when Ctrl-C stops a command.

The dashed spelling (`--flag-name`) is accepted for every flag by `normalize_flag`, the app's token normalizer,
so help lists each flag once and never has to cut a long name to fit an 80-column terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pruneofa.core.errors import PruneofaError


def normalize_flag(name: str) -> str:
    """Click's token_normalize_func: `task-name` -> `task_name` (it is given names without their leading dashes)."""
    return name.replace("-", "_")


def opt(*names: str, help: str, **kwargs: object) -> typer.models.OptionInfo:
    """An option under its reference spelling; `--flag-name` also works (see `normalize_flag`)."""
    return typer.Option(*names, help=help, **kwargs)  # type: ignore[arg-type]


Task = Annotated[
    str,
    opt(
        "--task_name",
        help="GLUE task (cola mnli mrpc qnli qqp rte sst2 stsb wnli) or the built-in offline task rotten_tomatoes.",
    ),
]


# ---------------------------------------------------------------- output paths, checked before any work


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing parent of `path` when it is a file (nothing can be created below it)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_folder(path: Path, flag: str) -> None:
    """`path` is a folder or can be made one: refused at once, not after the work that would fill it."""
    if path.exists() and not path.is_dir():
        raise PruneofaError(f"{flag} {path}: is a file; pass a folder path (a missing folder is created)")
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise PruneofaError(f"{flag} {path}: {blocker} is not a folder (it is a file); choose a path in a folder")


def check_output_file(path: Path, flag: str, example: str) -> None:
    """`path` can be written as a file: not a folder, and no file where one of its folders should be."""
    if path.is_dir():
        raise PruneofaError(f"{flag} {path}: is a folder; name a file to write, e.g. {path / example}")
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise PruneofaError(f"{flag} {path}: {blocker} is not a folder (it is a file); choose a path in a folder")


# ---------------------------------------------------------------- Ctrl-C

KEPT_NOTHING = "nothing partial was left (outputs are written atomically); run the same command again"
_interrupt_note: list[Callable[[list[str]], str]] = []


def on_interrupt(note: Callable[[list[str]], str]) -> None:
    """Register what the running command tells the user if Ctrl-C stops it: `note(args)` gets the command line
    (without the program name) and says what was saved and the command that continues."""
    _interrupt_note[:] = [note]


def clear_interrupt_note() -> None:
    _interrupt_note.clear()


def interrupt_note(args: list[str]) -> str:
    """The registered note (computed now, so it sees what was saved), else that nothing partial was left."""
    if _interrupt_note:
        try:
            return _interrupt_note[0](args)
        except Exception:  # the note must never hide the interrupt itself
            pass
    return KEPT_NOTHING
