"""Real multi-process runs through torchrun (gloo on CPU), kill-and-continue, and a crashing rank."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pruneofa.models.loading import resolve_model

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

DATA = ["--task_name", "rotten_tomatoes", "--max_train_samples", "96", "--max_eval_samples", "64",
        "--max_seq_length", "32", "--seed", "7", "--learning_rate", "1e-3", "--num_train_epochs", "2"]  # fmt: skip


def torchrun(nproc: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "pruneofa", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def pruneofa(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pruneofa", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def deterministic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without dropout, so a 2-process run and a 1-process run can agree to float noise."""
    folder = tmp_path_factory.mktemp("models") / "tiny-nodropout"
    shutil.copytree(resolve_model("tiny-bert"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    sparse = tmp_path_factory.mktemp("models") / "tiny-sparse"
    done = pruneofa("sparsify", str(folder), "--sparsity", "0.8", "--output_dir", str(sparse))
    assert done.returncode == 0, done.stderr
    return sparse


def history(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_with_double_batch(deterministic_model: Path, tmp_path: Path) -> None:
    args = [*DATA, "--model_name_or_path", str(deterministic_model), "--do_prune"]
    two = torchrun(2, "train", *args, "--batch_size", "8", "--output_dir", str(tmp_path / "ddp"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = pruneofa("train", *args, "--batch_size", "16", "--output_dir", str(tmp_path / "single"))
    assert one.returncode == 0, one.stderr[-3000:]

    ddp_hist, single_hist = history(tmp_path / "ddp"), history(tmp_path / "single")
    assert len(ddp_hist) == len(single_hist) == 2  # written once, by rank 0 only
    for a, b in zip(ddp_hist, single_hist, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["eval"] == b["eval"]
    ddp_w = load_file(tmp_path / "ddp" / "model.safetensors")
    single_w = load_file(tmp_path / "single" / "model.safetensors")
    for name, tensor in single_w.items():
        torch.testing.assert_close(ddp_w[name], tensor, atol=1e-5, rtol=1e-4)
    meta = json.loads((tmp_path / "ddp" / "pruneofa.json").read_text())
    start_pattern = load_file(deterministic_model / "model.safetensors")
    for name in meta["sparsity"]["layers"]:
        assert torch.equal(ddp_w[name] != 0, start_pattern[name.removeprefix("bert.")] != 0), name


def test_layer_distillation_with_a_live_teacher_on_every_rank(deterministic_model: Path, tmp_path: Path) -> None:
    """Each rank runs its own (unwrapped) teacher on its own batch; gradients still average like one process."""
    args = [*DATA, "--model_name_or_path", str(deterministic_model), "--do_prune", "--do_distillation",
            "--teacher_model_name_or_path", "tiny-bert", "--loss_weights", "0", "1", "--temperature", "2",
            "--hidden_distill_weight", "1", "--attention_distill_weight", "1", "--num_train_epochs", "1"]  # fmt: skip
    two = torchrun(2, "train", *args, "--batch_size", "8", "--output_dir", str(tmp_path / "ddp"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = pruneofa("train", *args, "--batch_size", "16", "--output_dir", str(tmp_path / "single"))
    assert one.returncode == 0, one.stderr[-3000:]
    # The layer terms average over each rank's real tokens, so 2 x 8 equals 1 x 16 only up to padding counts.
    for a, b in zip(history(tmp_path / "ddp"), history(tmp_path / "single"), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.05)
    meta = json.loads((tmp_path / "ddp" / "pruneofa.json").read_text())
    assert meta["args"]["hidden_distill_weight"] == 1.0
    ddp_w = load_file(tmp_path / "ddp" / "model.safetensors")
    start = load_file(deterministic_model / "model.safetensors")
    for name in meta["sparsity"]["layers"]:
        assert torch.equal(ddp_w[name] != 0, start[name.removeprefix("bert.")] != 0), name


def test_qat_observers_identical_across_ranks(deterministic_model: Path, tmp_path: Path) -> None:
    """Observers update from each rank's own batches; after each epoch every rank must hold rank 0's."""
    script = tmp_path / "check.py"
    script.write_text(
        "import sys, torch, torch.distributed as dist\n"
        "from pruneofa.cli import main\n"
        "import pruneofa.training.stage as t\n"
        "orig = t.end_of_epoch\n"
        "def spy(loop, *a, **k):\n"
        "    result = orig(loop, *a, **k)\n"
        "    from pruneofa.compress.quantization import quant_state\n"
        "    state = torch.cat([v.flatten() for v in quant_state(loop.inner).values()])\n"
        "    out = [torch.zeros_like(state) for _ in range(dist.get_world_size())]\n"
        "    dist.all_gather(out, state)\n"
        "    assert all(torch.equal(out[0], o) for o in out), 'observers differ across ranks'\n"
        "    print('OBSERVERS-IDENTICAL', flush=True)\n"
        "    return result\n"
        "t.end_of_epoch = spy\n"
        "main(sys.argv[1:])\n"
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           "train", *DATA, "--model_name_or_path", str(deterministic_model), "--do_prune", "--do_quantization",
           "--batch_size", "8", "--output_dir", str(tmp_path / "qat")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("OBSERVERS-IDENTICAL") == 4  # 2 ranks x 2 epochs


def _wait_for_mid_epoch_checkpoint(output_dir: Path, proc: subprocess.Popen[str], limit: float = 240) -> None:
    state_file = output_dir / "checkpoints" / "last" / "state.json"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        if state_file.exists():
            position = json.loads(state_file.read_text())["position"]
            if position["epoch"] >= 1 and position["micro_in_epoch"] > 0:  # any mid-epoch point after the first
                return
        time.sleep(0.05)
    raise AssertionError("no mid-epoch checkpoint appeared")


def test_killed_run_continues_to_the_same_result(tmp_path: Path) -> None:
    args = ["train", *DATA, "--model_name_or_path", "tiny-bert", "--batch_size", "8", "--checkpointing_steps", "2",
            "--num_train_epochs", "3"]  # fmt: skip
    straight = pruneofa(*args, "--output_dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pruneofa", *args, "--output_dir", str(out)]
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=quiet, stderr=quiet, text=True, start_new_session=True)
    try:
        _wait_for_mid_epoch_checkpoint(out, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    last = out / "checkpoints" / "last"  # the kill never leaves a half-written checkpoint in place
    assert json.loads((last / "state.json").read_text())["position"]["epoch"] >= 1
    assert load_file(last / "tensors.safetensors")
    refused = pruneofa(*args, "--output_dir", str(out))
    assert refused.returncode == 2 and "--resume_from_checkpoint" in refused.stderr

    resumed = pruneofa(*args, "--output_dir", str(out), "--resume_from_checkpoint", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing from" in resumed.stderr

    a, b = history(tmp_path / "straight"), history(out)
    assert [r["epoch"] for r in b] == [0, 1, 2]
    for x, y in zip(a, b, strict=True):
        assert x["eval"] == y["eval"]
    wa, wb = load_file(tmp_path / "straight" / "model.safetensors"), load_file(out / "model.safetensors")
    for name, tensor in wa.items():
        torch.testing.assert_close(wb[name], tensor, atol=1e-6, rtol=1e-5)
    assert json.loads((out / "pruneofa.json").read_text())["finished"] is True


def test_changed_arguments_refused_on_continue(tmp_path: Path) -> None:
    args = ["train", *DATA, "--model_name_or_path", "tiny-bert", "--batch_size", "16", "--num_train_epochs", "1"]
    first = pruneofa(*args, "--output_dir", str(tmp_path / "run"))
    assert first.returncode == 0, first.stderr[-3000:]
    changed = pruneofa(*args, "--learning_rate", "5e-4", "--output_dir", str(tmp_path / "run"),
                       "--resume_from_checkpoint", str(tmp_path / "run"))  # fmt: skip
    assert changed.returncode == 2
    assert "--learning_rate" in changed.stderr.strip().splitlines()[-1]


def test_dead_rank_ends_the_job(tmp_path: Path) -> None:
    """SIGKILL one rank mid-training: the launcher must end the whole job with an error, not hang."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pruneofa",
           "train", *DATA, "--model_name_or_path", "tiny-bert", "--batch_size", "4", "--num_train_epochs", "20",
           "--checkpointing_steps", "1", "--output_dir", str(tmp_path / "crash")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        state = tmp_path / "crash" / "checkpoints" / "last" / "state.json"
        deadline = time.monotonic() + 240
        while not state.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        victim = _rank_pid(proc.pid, rank=1)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        assert time.monotonic() - killed_at < 120
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "rank" in err and ("Signals.SIGKILL" in err or "exitcode" in err), err[-2000:]


def _rank_pid(root: int, rank: int) -> int:
    """The pid of the worker process with RANK=rank among root's descendants (read from /proc)."""
    parents: dict[int, int] = {}
    environs: dict[int, list[bytes]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The field after the parenthesised command name: state, then the parent pid.
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                environs[int(entry.name)] = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    for pid in family:
        if f"RANK={rank}".encode() in environs.get(pid, []) and b"LOCAL_RANK" in b"".join(environs.get(pid, [])):
            return pid
    raise AssertionError(f"no process with RANK={rank} under {root}")


def test_legacy_launcher_with_installed_entry_point(tmp_path: Path) -> None:
    """The seed's form: `python -m torch.distributed.launch ... <script>` passes --local-rank=N to the script."""
    entry_point = Path(sys.executable).parent / "pruneofa"
    cmd = [sys.executable, "-m", "torch.distributed.launch", "--standalone", "--nproc_per_node=2", str(entry_point),
           "train", *DATA, "--model_name_or_path", "tiny-bert", "--batch_size", "8", "--num_train_epochs", "1",
           "--no_cuda", "--output_dir", str(tmp_path / "launch")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world size 2" in done.stderr
    assert len(history(tmp_path / "launch")) == 1


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_launcher(node_rank: int, port: int, *args: str) -> subprocess.Popen[str]:
    """One node's torchrun of a two-node, one-process-per-node job whose master is this machine."""
    launcher = ["torch.distributed.run", "--nnodes=2", f"--node_rank={node_rank}", "--nproc_per_node=1",
                "--master_addr=127.0.0.1", f"--master_port={port}"]  # fmt: skip
    cmd = [sys.executable, "-m", *launcher, "-m", "pruneofa", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_two_nodes_match_one_node_with_two_processes(tmp_path: Path) -> None:
    """The README's two-node command, both launchers on this machine sharing one filesystem (and one empty cache:
    both nodes' local rank 0 build the built-in data, the tiny-bert folder and see the teacher-logits cache at
    once); the result must be the one-node, two-process run's."""
    args = ["train", *DATA, "--model_name_or_path", "tiny-bert", "--do_distillation",
            "--teacher_model_name_or_path", "tiny-bert", "--batch_size", "8", "--no_cuda"]  # fmt: skip
    port = _free_port()
    nodes = [node_launcher(rank, port, *args, "--cache_dir", str(tmp_path / "shared-cache"),
                           "--output_dir", str(tmp_path / "two-nodes")) for rank in (0, 1)]  # fmt: skip
    try:
        errs = [proc.communicate(timeout=400)[1] for proc in nodes]
    finally:
        for proc in nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    for rank, (proc, err) in enumerate(zip(nodes, errs, strict=True)):
        assert proc.returncode == 0, f"node {rank}:\n{err[-3000:]}"
    assert "world size 2" in errs[0]
    one = torchrun(2, *args, "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "one-node"))
    assert one.returncode == 0, one.stderr[-3000:]

    nodes_hist, one_hist = history(tmp_path / "two-nodes"), history(tmp_path / "one-node")
    assert len(nodes_hist) == len(one_hist) == 2
    for a, b in zip(nodes_hist, one_hist, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["eval"] == b["eval"]
    nodes_w = load_file(tmp_path / "two-nodes" / "model.safetensors")
    one_w = load_file(tmp_path / "one-node" / "model.safetensors")
    assert nodes_w.keys() == one_w.keys()
    for name, tensor in one_w.items():
        torch.testing.assert_close(nodes_w[name], tensor, atol=1e-6, rtol=1e-5)
    # Each cache entry built once and whole; no staging folder or temp file left by either node.
    shared = tmp_path / "shared-cache"
    leftovers = [p for p in shared.rglob("*") if ".tmp" in p.name or ".staging" in p.name]
    assert not leftovers, leftovers
    assert len(list((shared / "teacher_logits").glob("*.safetensors"))) == 1
