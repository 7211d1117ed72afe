"""Shared test set-up: an isolated cache so tests never touch ~/.cache/pruneofa, offline Hub settings, and the
session-scoped artefacts several test folders read (built once, on first use)."""

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


@pytest.fixture(autouse=True)
def isolated_engine_choice(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's own record of bench's fastest engines: one test's `bench` must not pick another's engine."""
    folder = tmp_path_factory.mktemp("engine-choice")
    monkeypatch.setattr("pruneofa.runtime.engine_choice.default_cache_dir", lambda: folder)


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{teacher,student,stage1,stage2} trained through the real CLI, root/{int8,fp32} exported (tiny_chain.py)."""
    from tiny_chain import make_chain

    return make_chain(tmp_path_factory.mktemp("tiny-chain"))


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{dense,stage2} training folders and root/{fp32,int8} exports (onnx + openvino), untrained (~20 s)."""
    from tiny_exports import make_exports

    return make_exports(tmp_path_factory.mktemp("tiny-exports"))
