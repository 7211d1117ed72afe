"""One pipeline step: what it depends on (hashed into its fingerprint), where it writes, and how it runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Step:
    name: str
    inputs: dict[str, Any]  # what the step depends on: recipe values and earlier fingerprints
    output: Path
    run: Callable[[], dict[str, Any]]  # does the work, returns a summary for the report

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]
