"""The CPU a benchmark ran on, read from /proc/cpuinfo: model name, cores, and the flags that decide which int8
kernels can run (AVX-512 VNNI for int8 dot products, AMX for OpenVINO's sparse-weights path).

Parsing is a pure function of the file's text, so tests feed it made-up CPUs.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# Linux spells VNNI avx512_vnni (older kernels: avx512vnni); AMX shows up as amx_tile / amx_int8 / amx_bf16.
_VNNI_FLAGS = ("avx512_vnni", "avx512vnni")
_AMX_FLAGS = ("amx_tile", "amx_int8")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name, logical CPUs, physical cores and int8-relevant flags from the text of /proc/cpuinfo."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    fields = [dict(_field(line) for line in block.splitlines() if ":" in line) for block in blocks]
    first = fields[0] if fields else {}
    flags = set(first.get("flags", "").split())
    cores = {(f.get("physical id", "0"), f.get("core id", str(i))) for i, f in enumerate(fields)}
    return {
        "model_name": first.get("model name") or platform.processor() or "unknown",
        "logical_cpus": len(fields),
        "physical_cores": len(cores),
        "avx512": "avx512f" in flags,
        "avx512_vnni": any(f in flags for f in _VNNI_FLAGS),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": all(f in flags for f in _AMX_FLAGS),
        "amx_flags": sorted(f for f in flags if f.startswith("amx")),
    }


def _field(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip(), value.strip()


def cpu_info(path: Path = CPUINFO) -> dict[str, Any]:
    """This machine's CPU; where /proc/cpuinfo is missing (not Linux), what Python can tell."""
    try:
        info = parse_cpuinfo(path.read_text())
    except OSError:
        count = os.cpu_count() or 1
        info = parse_cpuinfo("")
        info.update(logical_cpus=count, physical_cores=count, flags_known=False)
    info["usable_cpus"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return info


def default_threads(info: dict[str, Any]) -> int:
    """All physical cores this process may use: hyper-threads slow int8 GEMMs down rather than up."""
    physical = int(info.get("physical_cores") or 0) or int(info.get("logical_cpus") or 1)
    usable = int(info.get("usable_cpus") or physical)
    return max(1, min(physical, usable))


def amx_runs_bf16(info: dict[str, Any], onednn_max_cpu_isa: str | None) -> bool:
    """Whether OpenVINO's bf16 float ops run on AMX here: the CPU has AMX-BF16 and $ONEDNN_MAX_CPU_ISA (which
    OpenVINO honours) does not cap oneDNN below it (e.g. AVX512_CORE_BF16, set to behave as a CPU without AMX)."""
    capped = bool(onednn_max_cpu_isa) and "AMX" not in str(onednn_max_cpu_isa).upper()
    return "amx_bf16" in (info.get("amx_flags") or []) and not capped
