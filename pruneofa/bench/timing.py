"""How `bench` times: interleaved rounds, untimed warm-up, an iterations-or-duration stop rule, percentiles
(what the numbers are compared with is `compare`).

Other processes on a small machine slow everything down for seconds at a time (2-4x seen on 2 shared cores).
Timing variant A for 10 s and then B for 10 s would charge such a burst to one of them; running every variant a
block per round, in an order rotated each round, spreads it over all of them. Nothing here knows an engine: a
variant is a callable, so tests time fake ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pruneofa.bench.runners import Runner


@dataclass(frozen=True)
class Variant:
    engine: str  # onnxruntime, openvino or torch
    precision: str  # int8 (the sparse model), fp32 (the dense baseline) or default (OpenVINO's own pick)
    batch: int

    @property
    def key(self) -> str:
        return f"{self.engine}-{self.precision}-b{self.batch}"

    @property
    def model(self) -> str:
        return f"{self.engine}-{self.precision}"


@dataclass(frozen=True)
class StopRule:
    """Per variant: at most `iterations` timed runs and about `duration` seconds, spread over `rounds` rounds."""

    iterations: int
    duration: float
    rounds: int
    warmup: int

    def per_round(self) -> tuple[int, float]:
        return math.ceil(self.iterations / self.rounds), self.duration / self.rounds


def rotated(items: list[Variant], round_index: int) -> list[Variant]:
    """Round r starts with variant r (mod n): no variant always runs first (cold caches) or last."""
    shift = round_index % len(items) if items else 0
    return items[shift:] + items[:shift]


def time_variants(
    variants: list[Variant],
    runners: dict[str, Runner],
    feeds: dict[int, list[dict[str, np.ndarray]]],
    rule: StopRule,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """Latencies in seconds per variant key, and the order the variants ran in each round.

    progress(key, blocks done, blocks in all) is called after each block (for a progress bar).
    """
    for variant in variants:  # first runs allocate, compile kernels and fill caches: never timed
        for i in range(rule.warmup):
            runners[variant.model](_pick(feeds[variant.batch], i))
    latencies: dict[str, list[float]] = {v.key: [] for v in variants}
    order: list[list[str]] = []
    block_iterations, block_seconds = rule.per_round()
    for round_index in range(rule.rounds):
        ordered = rotated(variants, round_index)
        order.append([v.key for v in ordered])
        for position, variant in enumerate(ordered, start=1):
            done = latencies[variant.key]
            left = min(block_iterations, rule.iterations - len(done))
            run_block(runners[variant.model], feeds[variant.batch], left, block_seconds, done)
            if progress is not None:
                progress(variant.key, round_index * len(variants) + position, rule.rounds * len(variants))
    return latencies, order


def _pick(batches: list[dict[str, np.ndarray]], index: int) -> dict[str, np.ndarray]:
    return batches[index % len(batches)]


def run_block(
    run: Runner, batches: list[dict[str, np.ndarray]], iterations: int, seconds: float, out: list[float]
) -> None:
    """Up to `iterations` timed runs, stopping once `seconds` of inference time is spent (always at least one)."""
    spent = 0.0
    for i in range(iterations):
        if i and spent >= seconds:
            break
        feed = _pick(batches, len(out))
        start = time.perf_counter()
        run(feed)
        elapsed = time.perf_counter() - start
        out.append(elapsed)
        spent += elapsed


def latency_stats(seconds: list[float], batch: int) -> dict[str, Any]:
    """min/p50/p90/p99/max in ms; throughput in sequences/s from the median (robust to bursts of other load)."""
    ms = np.sort(np.asarray(seconds, dtype=np.float64)) * 1000.0
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    return {
        "iterations": len(ms),
        "timed_s": float(ms.sum() / 1000.0),
        "latency_ms": {
            "min": float(ms[0]),
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "max": float(ms[-1]),
            "mean": float(ms.mean()),
        },
        "throughput_seq_s": batch * 1000.0 / p50,
        "throughput_mean_seq_s": batch * len(ms) / float(ms.sum() / 1000.0),
    }
