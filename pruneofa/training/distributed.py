"""Process-group setup: the only module that reads RANK / WORLD_SIZE / LOCAL_RANK.

Works unchanged for a single process, `torchrun` and `python -m torch.distributed.launch` (which sets the same
environment variables). Backend: NCCL for CUDA, gloo for CPU, overridable. Collectives get a timeout, so a rank that
dies makes the others fail instead of hanging, and the group is destroyed on every exit path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from pruneofa.core.errors import PruneofaError


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's object, in rank order (one-element list when single-process)."""
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over ranks (e.g. loss totals and example counts for a global average)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (QAT observers update from local batches between DDP's broadcasts)."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    @contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Local rank 0 of each node runs the block first (building on-disk caches); the others then reuse them."""
        if not self.is_local_main:
            self.barrier()
        try:
            yield
        finally:
            if self.is_local_main:
                self.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's object on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def print0(self, *args: Any) -> None:
        if self.is_main:
            print(*args, file=sys.stderr, flush=True)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise PruneofaError(f"environment variable {name}={raw!r}: must be an integer") from None


def _pick_device(local_rank: int, no_cuda: bool) -> torch.device:
    if no_cuda or not torch.cuda.is_available():
        return torch.device("cpu")
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def rank_label() -> str:
    """'[rank N] ' inside a multi-process job, so an error line says which process hit it."""
    return f"[rank {os.environ['RANK']}] " if _env_int("WORLD_SIZE", 1) > 1 and "RANK" in os.environ else ""


DDP_BACKENDS = ("gloo", "nccl", "mpi")  # torch.distributed's own backends


def check_backend(backend: str | None) -> str | None:
    """`--ddp_backend` as torch spells it (lower case), or an input error naming the choices; None: by device."""
    if backend is None:
        return None
    if backend.lower() not in DDP_BACKENDS:
        raise PruneofaError(
            f"--ddp_backend {backend!r}: unknown; use one of {', '.join(DDP_BACKENDS)} "
            "(or leave it out: nccl on CUDA, gloo on CPU)"
        )
    chosen = backend.lower()
    if _env_int("WORLD_SIZE", 1) > 1 and not getattr(dist, f"is_{chosen}_available", lambda: True)():
        built = [b for b in DDP_BACKENDS if getattr(dist, f"is_{b}_available", lambda: False)()]
        raise PruneofaError(
            f"--ddp_backend {chosen}: this torch build has no {chosen} support; use {' or '.join(built) or 'gloo'}"
        )
    return chosen


@contextmanager
def runtime(no_cuda: bool = False, backend: str | None = None, timeout_s: float = 600.0) -> Iterator[Runtime]:
    """Join the process group the launcher describes (if any) and always leave it again."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = _pick_device(local_rank, no_cuda)
    chosen = None
    if world_size > 1:
        chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
        if chosen == "nccl" and device.type != "cuda":
            raise PruneofaError("--ddp_backend nccl needs CUDA devices; use gloo (the default on CPU)")
        dist.init_process_group(
            backend=chosen,
            timeout=timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None,
        )
    try:
        yield Runtime(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=chosen)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
