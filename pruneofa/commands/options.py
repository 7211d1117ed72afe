"""Option helpers shared by the commands: the reference's `--flag_name` spelling plus a `--flag-name` alias."""

from __future__ import annotations

from typing import Annotated

import typer


def opt(*names: str, help: str, **kwargs: object) -> typer.models.OptionInfo:
    """An option under its reference spelling plus the dashed alias."""
    aliases = [n.replace("_", "-") for n in names if "_" in n]
    return typer.Option(*names, *aliases, help=help, **kwargs)  # type: ignore[arg-type]


Task = Annotated[
    str,
    opt(
        "--task_name",
        help="GLUE task (cola mnli mrpc qnli qqp rte sst2 stsb wnli) or the built-in offline task rotten_tomatoes.",
    ),
]
