"""Fail fast when the Hugging Face Hub cannot be reached, instead of after the client's ~30 s of retries."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from pruneofa.core.errors import PruneofaError

_TRUE = ("1", "true", "yes", "on")


def hub_offline_reason() -> str | None:
    """Why Hub downloads are impossible right now, or None when the Hub answers."""
    if any(os.environ.get(var, "").lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return "HF_HUB_OFFLINE is set"  # the user asked for no network: don't even probe
    return _probe(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@functools.lru_cache(maxsize=4)
def _probe(endpoint: str) -> str | None:
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        return f"{host} is unreachable ({exc.strerror or exc})"
    return None


def require_hub(what: str, fix: str) -> None:
    """Raise a one-line error naming `what` and the `fix` when the Hub cannot be used."""
    reason = hub_offline_reason()
    if reason:
        raise PruneofaError(f"{what}: needs the Hugging Face Hub, but {reason}; {fix}")
