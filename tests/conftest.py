"""Shared test set-up: an isolated cache so tests never touch ~/.cache/pruneofa, and offline Hub settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests must never reach for the network: a Hub id has to fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("pruneofa-cache")
    old = os.environ.get("PRUNEOFA_CACHE")
    os.environ["PRUNEOFA_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("PRUNEOFA_CACHE", None)
    else:
        os.environ["PRUNEOFA_CACHE"] = old
