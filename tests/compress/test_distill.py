"""Distillation invariants: KD loss math, teacher logits per example, coverage checks, cache round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_batch, tiny_bert

from pruneofa.compress.distillation import (
    DistillConfig,
    assemble_logits,
    cache_key,
    distillation_loss,
    load_logits_cache,
    logits_by_example,
    save_logits_cache,
    student_loss,
)
from pruneofa.core.errors import PruneofaError


def _logits(seed: int, rows: int = 4, cols: int = 3) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def test_soft_kl_is_zero_when_student_equals_teacher() -> None:
    logits = _logits(0)
    cfg = DistillConfig(loss_weights=(0.0, 1.0), temperature=2.0)
    assert distillation_loss(logits, logits, None, cfg, is_regression=False).item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_loss(_logits(1), logits, None, cfg, is_regression=False).item() > 1e-3


def test_kl_t2_scaling_matches_hand_computation() -> None:
    student, teacher, t = _logits(1), _logits(2), 3.0
    labels = torch.tensor([0, 2, 1, 1])
    cfg = DistillConfig(loss_types=("CE", "KL"), loss_weights=(0.3, 0.7), temperature=t)
    # Hand computation, example by example, in float64.
    kl_sum = 0.0
    for s_row, t_row in zip(student.double().tolist(), teacher.double().tolist(), strict=True):
        p = [math.exp(v / t) for v in t_row]
        q = [math.exp(v / t) for v in s_row]
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        kl_sum += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    kl = kl_sum / student.shape[0]  # batchmean: per example, not per logit
    ce = F.cross_entropy(student.double(), labels).item()
    expected = 0.3 * ce + 0.7 * t**2 * kl
    got = distillation_loss(student, teacher, labels, cfg, is_regression=False).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_soft_ce_and_mse_forms() -> None:
    student, teacher, t = _logits(3), _logits(4), 2.0
    soft_ce = -(F.softmax(teacher / t, -1) * F.log_softmax(student / t, -1)).sum(-1).mean()
    cfg = DistillConfig(loss_types=("CE", "CE"), loss_weights=(0.0, 1.0), temperature=t)
    assert distillation_loss(student, teacher, None, cfg, False).item() == pytest.approx(t**2 * soft_ce.item())
    cfg = DistillConfig(loss_types=("CE", "MSE"), loss_weights=(0.0, 2.0), temperature=t)
    expected = 2.0 * F.mse_loss(student, teacher).item()  # no T^2 for MSE
    assert distillation_loss(student, teacher, None, cfg, False).item() == pytest.approx(expected)


def test_pure_kd_ignores_labels() -> None:
    student, teacher = _logits(5), _logits(6)
    cfg = DistillConfig(loss_weights=(0.0, 1.0), temperature=2.0)
    a = distillation_loss(student, teacher, torch.tensor([0, 0, 0, 0]), cfg, False)
    b = distillation_loss(student, teacher, torch.tensor([2, 1, 0, 2]), cfg, False)
    c = distillation_loss(student, teacher, None, cfg, False)
    assert a.item() == b.item() == c.item()
    with pytest.raises(PruneofaError, match="labels are required"):
        distillation_loss(student, teacher, None, DistillConfig(), False)


def test_regression_uses_mse_both_parts() -> None:
    student, teacher = _logits(7, cols=1), _logits(8, cols=1)
    labels = torch.tensor([0.5, 1.0, 4.0, 2.5])
    cfg = DistillConfig(loss_weights=(0.5, 0.5), temperature=4.0)
    expected = 0.5 * F.mse_loss(student.squeeze(-1), labels) + 0.5 * F.mse_loss(student, teacher)
    got = distillation_loss(student, teacher, labels, cfg, is_regression=True)
    assert got.item() == pytest.approx(expected.item())
    assert student_loss(student, labels, True).item() == pytest.approx(F.mse_loss(student.squeeze(-1), labels).item())


def test_gradient_flows_to_student_only() -> None:
    student = _logits(9).requires_grad_()
    teacher = _logits(10).requires_grad_()
    distillation_loss(student, teacher, torch.tensor([0, 1, 2, 0]), DistillConfig(), False).backward()
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss_types": ("KL", "KL")}, r"loss_types\[0\].*'CE'"),
        ({"loss_types": ("CE", "JS")}, r"loss_types\[1\].*'KL', 'CE', 'MSE'"),
        ({"loss_weights": (0.0, 0.0)}, "not both 0"),
        ({"loss_weights": (-1.0, 1.0)}, ">= 0"),
        ({"temperature": 0.0}, "temperature must be > 0"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PruneofaError, match=message):
        DistillConfig(**kwargs)  # type: ignore[arg-type]


def _loader(n: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    full = tiny_batch(batch_size=n, seed=1)
    batches = []
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in full.items()}
        batch["example_id"] = torch.arange(start, min(start + batch_size, n))
        batch["labels"] = torch.zeros(len(batch["example_id"]), dtype=torch.long)
        batches.append(batch)
    return batches


def test_teacher_logits_match_direct_forward_and_restore_mode() -> None:
    teacher = tiny_bert(num_labels=3)
    teacher.train()
    loader = _loader(7, batch_size=3)
    ids, logits = logits_by_example(teacher, loader, "cpu")
    assert teacher.training
    assert ids.dtype == torch.int64 and ids.tolist() == list(range(7))
    assert logits.dtype == torch.float32 and logits.shape == (7, 3)
    teacher.eval()
    with torch.no_grad():
        direct = teacher(**{k: v for k, v in tiny_batch(batch_size=7, seed=1).items()}).logits
    torch.testing.assert_close(logits, direct, rtol=1e-5, atol=1e-5)


def test_assemble_logits_orders_and_checks_coverage() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    table = assemble_logits(torch.tensor([2, 0, 1]), logits, 3)
    assert table.tolist() == [[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]
    with pytest.raises(PruneofaError, match="1 missing"):
        assemble_logits(torch.tensor([2, 0, 1]), logits, 4)
    with pytest.raises(PruneofaError, match="1 duplicated"):
        assemble_logits(torch.tensor([0, 0, 1]), logits, 3)
    with pytest.raises(PruneofaError, match="must lie in"):
        assemble_logits(torch.tensor([0, 1, 5]), logits, 3)


def test_cache_round_trip_and_key_mismatch(tmp_path: Path) -> None:
    digest, key = cache_key(teacher="t@abc", task="sst2", max_length="128", padding="max_length")
    assert (
        len(digest) == 64
        and digest == cache_key(padding="max_length", max_length="128", task="sst2", teacher="t@abc")[0]
    )
    path = tmp_path / "cache" / f"{digest}.safetensors"
    assert load_logits_cache(path, key) is None
    logits = _logits(11, rows=5)
    save_logits_cache(path, logits, key)
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    loaded = load_logits_cache(path, key)
    assert loaded is not None and torch.equal(loaded, logits)
    _, other = cache_key(teacher="t@abc", task="sst2", max_length="64", padding="max_length")
    assert load_logits_cache(path, other) is None
    path.write_bytes(b"not a safetensors file")
    assert load_logits_cache(path, key) is None


_LOGITS_WRITER = r"""
import sys, time
from pathlib import Path
import torch
from pruneofa.compress.distillation import cache_key, load_logits_cache, save_logits_cache
path, go = Path(sys.argv[1]), Path(sys.argv[2])
_, key = cache_key(teacher="t", task="sst2")
logits = torch.arange(2000 * 3, dtype=torch.float32).reshape(2000, 3)
Path(f"{go}.ready{sys.argv[-1]}").touch()
while not go.exists():
    time.sleep(0.01)
for _ in range(20):
    save_logits_cache(path, logits, key)
    loaded = load_logits_cache(path, key)
    assert loaded is not None and torch.equal(loaded, logits)
"""


@pytest.mark.slow
def test_concurrent_cache_writers_leave_one_intact_entry(tmp_path: Path) -> None:
    """Two processes (two nodes sharing a filesystem) writing the same entry: readers only ever see a whole file."""
    import subprocess
    import sys
    import time

    path, go = tmp_path / "cache" / "entry.safetensors", tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _LOGITS_WRITER, str(path), str(go), str(i)], stderr=subprocess.PIPE)
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
        time.sleep(0.05)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errors]
    assert list(path.parent.iterdir()) == [path]  # one entry, no temp file left behind
    _, key = cache_key(teacher="t", task="sst2")
    loaded = load_logits_cache(path, key)
    assert loaded is not None and loaded.shape == (2000, 3)
