"""Which engine `predict` and `eval` run an export on when none is named: the fastest one `pruneofa bench`
measured for this model on this machine, else onnxruntime.

The fastest engine is a fact of the machine, not of the model: on an AMX CPU at batch 8, OpenVINO's dense int8
kernel beats pruneofa's zero-skipping one; without AMX the sparse kernel wins (NOTES.md, issue 14). So `bench`
records its per-batch "fastest_engine" in $PRUNEOFA_CACHE/engine-choice.json, keyed by the model (the export's
model.onnx sha256; a bundle of the export unpacks to the same file and shares the record) and by the machine
(CPU model, the ISA flags that decide which kernels run, usable CPUs, and $ONEDNN_MAX_CPU_ISA, which switches
OpenVINO's AMX off). Another machine, or the same one with AMX masked, finds no record and gets the default; the
choice always says where it came from.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import ModelError
from pruneofa.core.files import read_json, write_json_atomic
from pruneofa.runtime.engines import ENGINES, ONNX_FILE, EngineName, default_engine, model_file, sparse_unavailable
from pruneofa.runtime.manifest import MANIFEST

CHOICE_FILE = "engine-choice.json"
# The flags that change which int8 kernel an engine (or pruneofa's kernel) picks on this CPU.
KERNEL_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")


@dataclass(frozen=True)
class Choice:
    engine: EngineName
    reason: str  # where the choice came from, for the user
    from_record: bool = False  # a bench record decided it (or was found and could not be followed)


def machine_key(cpu: dict[str, Any]) -> str:
    """A short id of what decides kernel speed here: CPU model, kernel flags, usable CPUs, oneDNN's ISA cap."""
    flags = set(cpu.get("flags") or ())
    parts = [
        str(cpu.get("model_name") or "unknown"),
        ",".join(flag for flag in KERNEL_FLAGS if flag in flags),
        str(cpu.get("usable_cpus") or ""),
        os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def model_key(folder: Path) -> str | None:
    """The export's model.onnx sha256 as its manifest records it (None: not an export folder)."""
    if not (folder / MANIFEST).is_file():
        return None
    try:
        entry = (read_json(folder / MANIFEST).get("files") or {}).get(ONNX_FILE) or {}
    except ModelError:
        return None
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    return sha if isinstance(sha, str) else None


def _records(cache_dir: Path) -> dict[str, Any]:
    path = cache_dir / CHOICE_FILE
    if not path.is_file():
        return {}
    try:
        return read_json(path)
    except ModelError:  # a damaged cache file only loses the recorded choices; bench writes it anew
        return {}


def record(
    folder: Path, fastest: dict[str, dict[str, Any]], cpu: dict[str, Any], when: str, cache_dir: Path | None = None
) -> Path | None:
    """Store bench's `fastest` ({"b1": {"engine", "seq_s", ...}}) for export `folder` on this machine; the file
    written, or None when `folder` has no manifest to key it by."""
    model = model_key(folder)
    if model is None or not fastest:
        return None
    cache_dir = cache_dir or default_cache_dir()
    records = _records(cache_dir)
    records[f"{model}/{machine_key(cpu)}"] = {
        "cpu": cpu.get("model_name"),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "measured": when,
        "fastest_engine": {
            batch: {"engine": row["engine"], "seq_s": row.get("seq_s")} for batch, row in fastest.items()
        },
    }
    write_json_atomic(cache_dir / CHOICE_FILE, records)
    return cache_dir / CHOICE_FILE


def choose(folder: Path, batch_size: int, cpu: dict[str, Any], cache_dir: Path | None = None) -> Choice:
    """The engine to run export `folder` on at `batch_size` rows per call: bench's fastest at the largest
    measured batch not above it (or the smallest measured), when it can run here; else the default."""
    fallback = default_engine(folder)
    model = model_key(folder)
    entry = _records(cache_dir or default_cache_dir()).get(f"{model}/{machine_key(cpu)}") if model else None
    if not isinstance(entry, dict) or not isinstance(entry.get("fastest_engine"), dict):
        return Choice(fallback, f"{fallback}: the default (`pruneofa bench` on this machine picks the fastest)")
    by_batch = {int(key.lstrip("b")): row for key, row in entry["fastest_engine"].items() if key.lstrip("b").isdigit()}
    if not by_batch:
        return Choice(fallback, f"{fallback}: the default (no usable record of `pruneofa bench`)")
    batch = max((b for b in by_batch if b <= batch_size), default=min(by_batch))
    engine, seq_s = by_batch[batch].get("engine"), by_batch[batch].get("seq_s")
    if engine not in ENGINES:
        return Choice(fallback, f"{fallback}: the default (bench's fastest, {engine!r}, is not a predict engine)", True)
    problem = _cannot_run(folder, engine)
    if problem:
        return Choice(
            fallback, f"{fallback}: the default ({engine}, bench's fastest here, cannot run: {problem})", True
        )
    speed = f", {seq_s:.1f} seq/s" if isinstance(seq_s, (int, float)) else ""
    return Choice(
        engine,
        f"{engine}: the fastest at batch {batch} on this machine (`pruneofa bench`, {entry.get('measured')}{speed})",
        True,
    )


def _cannot_run(folder: Path, engine: EngineName) -> str | None:
    try:
        model_file(folder, engine)
    except ModelError as exc:
        return str(exc)
    return sparse_unavailable() if engine == "openvino-sparse" else None
