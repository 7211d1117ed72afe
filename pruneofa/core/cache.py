"""Where pruneofa caches what it builds (built-in data, teacher logits, unpacked bundles)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$PRUNEOFA_CACHE, else ~/.cache/pruneofa."""
    env = os.environ.get("PRUNEOFA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pruneofa"
