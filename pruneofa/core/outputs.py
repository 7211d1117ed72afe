"""What a command may write over: only an earlier output of the same kind that this tool made, never a folder of
the user's, and never an input of the same run. Every command that writes a folder claims it here first, before
any work, so a refusal costs nothing and leaves everything as it was.

A folder's kind is read from the marker file each writer leaves: pruneofa.json (training run), sparsity.json
(sparse model from `sparsify`), manifest.json (export), pipeline.json (pipeline).
"""

from __future__ import annotations

from pathlib import Path

from pruneofa.core.errors import PruneofaError

MARKERS = {
    "training run": "pruneofa.json",
    "sparse model": "sparsity.json",
    "export": "manifest.json",
    "pipeline": "pipeline.json",
}


def folder_kind(path: Path) -> str | None:
    """The kind of pruneofa output `path` holds; None for an empty or missing folder; "other files" otherwise."""
    if not path.is_dir() or not any(path.iterdir()):
        return None
    for kind, marker in MARKERS.items():
        if (path / marker).is_file():
            return kind
    if (path / "checkpoints").is_dir():  # a training run killed before its first pruneofa.json
        return "training run"
    return "other files"


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _overlaps(output: Path, other: Path) -> bool:
    a, b = output.resolve(), other.resolve()
    return a == b or a in b.parents or b in a.parents


def check_not_an_input(output: Path, flag: str, inputs: dict[str, str | Path | None]) -> None:
    """Refuse an output folder that is, contains or lies inside an input of the same run (flag -> path)."""
    for input_flag, value in inputs.items():
        if value is None or not Path(value).exists():  # Hub ids and built-in names are not folders here
            continue
        if _overlaps(output, Path(value)):
            raise PruneofaError(
                f"{flag} {output}: is (or contains, or lies inside) {input_flag} {value}, an input of this run; "
                f"writing there would destroy it, choose another {flag}"
            )


def claim_output_dir(output: Path, flag: str, kind: str, overwrite: bool, overwrite_flag: str) -> bool:
    """May this command write its `kind` of output at `output`? True when an earlier one is to be replaced.

    Empty or missing: yes. An earlier output of the same kind: only with `overwrite_flag`. Anything else (the
    user's files, another kind of pruneofa output): never; the message says what is there and what to do.
    """
    if output.exists() and not output.is_dir():
        raise PruneofaError(f"{flag} {output}: is a file; pass a folder path")
    found = folder_kind(output)
    if found is None:
        return False
    if found == kind:
        if not overwrite:
            raise PruneofaError(
                f"{flag} {output}: already exists and holds an earlier {kind}; pass {overwrite_flag} to replace it, "
                "or choose another folder"
            )
        return True
    what = "files not made by pruneofa" if found == "other files" else f"{_a(found)}, not {_a(kind)}"
    raise PruneofaError(
        f"{flag} {output}: is not empty and holds {what}; {overwrite_flag} only replaces an earlier {kind}: "
        "choose an empty or new folder"
    )
