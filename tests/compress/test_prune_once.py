"""The prune-once step: cubic schedule, hidden-state distillation, exact final sparsity, and the CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from pruneofa.compress import sparsity
from pruneofa.compress.prune_once import GradualConfig, cubic_sparsity, gradual_prune, hidden_state_loss
from pruneofa.compress.sparsify import load_texts
from pruneofa.core.errors import PruneofaError
from pruneofa.models.loading import resolve_model


def test_cubic_schedule_shape() -> None:
    cfg = GradualConfig(target=0.9, steps=100, prune_start_fraction=0.1, prune_end_fraction=0.7)
    values = [cubic_sparsity(t, cfg) for t in range(100)]
    assert values[0] == values[9] == 0.0  # warm-up before the window
    assert values[70] == values[99] == 0.9
    assert all(b >= a for a, b in itertools.pairwise(values))  # never un-prunes
    # Cubic: most of the pruning happens early in the window (half the window in -> 1 - 0.5^3 of the way).
    assert cubic_sparsity(40, cfg) == pytest.approx(0.9 * (1 - 0.5**3))


def test_hidden_state_loss_ignores_padding_and_is_zero_on_match() -> None:
    a = (torch.randn(2, 5, 8), torch.randn(2, 5, 8))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert hidden_state_loss(a, a, mask).item() == 0.0
    b = (a[0].clone(), a[1].clone())
    b[1][0, 3:] += 100.0  # only padded positions differ
    assert hidden_state_loss(a, b, mask).item() == 0.0
    b[1][0, 0] += 1.0
    assert hidden_state_loss(a, b, mask).item() > 0.0


def test_config_validation_names_the_flag() -> None:
    with pytest.raises(PruneofaError, match="--sparsity"):
        GradualConfig(target=1.0)
    with pytest.raises(PruneofaError, match="pruning window"):
        GradualConfig(prune_start_fraction=0.8, prune_end_fraction=0.5)


@pytest.fixture(scope="module")
def tiny_encoder_dir() -> Path:
    return Path(resolve_model("tiny-bert"))


def test_gradual_prune_reaches_target_with_monotone_pattern(tiny_encoder_dir: Path) -> None:
    model = AutoModel.from_pretrained(tiny_encoder_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    texts = [f"a film number {i} that is {'good' if i % 2 else 'bad'} and long" for i in range(64)]
    cfg = GradualConfig(target=0.8, steps=24, prune_every=4, batch_size=8, max_seq_length=16)
    names = sparsity.prunable_weight_names(model)
    before = {n: model.get_parameter(n).detach().clone() for n in names}
    result = gradual_prune(model, tokenizer, texts, cfg)
    report = sparsity.sparsity_report(model, names)
    for name, row in report.items():
        assert row["zeros"] == round(0.8 * row["numel"]), name
        assert not torch.equal(model.get_parameter(name), before[name])  # it trained, not only masked
    logged = [entry["sparsity"] for entry in result["log"]]
    assert logged == sorted(logged) and logged[-1] == pytest.approx(0.8)


def test_too_little_text_is_refused(tiny_encoder_dir: Path) -> None:
    model = AutoModel.from_pretrained(tiny_encoder_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    with pytest.raises(PruneofaError, match="fewer than one batch"):
        gradual_prune(model, tokenizer, ["one text"], GradualConfig(batch_size=8))


def test_builtin_texts_exclude_dev_and_test() -> None:
    from pruneofa.core.cache import default_cache_dir
    from pruneofa.data.builtin import build_rotten_tomatoes

    texts = set(load_texts("rotten_tomatoes"))
    splits = build_rotten_tomatoes(default_cache_dir())
    for split in ("validation", "test"):
        held = {json.loads(line)["sentence"] for line in splits[split].read_text().splitlines()}
        assert not texts & held


@pytest.mark.slow
def test_cli_gradual_then_one_shot(tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"line {i} about a movie that was fine" for i in range(80)) + "\n\n")
    base = [sys.executable, "-m", "pruneofa", "sparsify", "tiny-bert", "--sparsity", "0.75"]
    gradual = subprocess.run([*base, "--method", "gradual", "--text_file", str(texts), "--steps", "12",
                              "--prune_every", "3", "--batch_size", "8", "--output_dir", str(tmp_path / "g")],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert gradual.returncode == 0, gradual.stderr[-2000:]
    assert "gradual" in gradual.stdout and "held-out hidden-state MSE" in gradual.stdout
    report = json.loads((tmp_path / "g" / "sparsity.json").read_text())
    assert report["method"] == "gradual" and report["overall"] == pytest.approx(0.75, abs=0.01)
    missing = subprocess.run([*base, "--method", "gradual", "--output_dir", str(tmp_path / "m")],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("error: --method gradual")


@pytest.mark.parametrize("decay", [False, True])
def test_learning_rate_decays_to_zero_after_the_last_cut_only_when_asked(decay: bool) -> None:
    from torch import nn

    from pruneofa.compress.prune_once import GradualConfig, prune_on_schedule

    model = nn.Sequential(nn.Linear(8, 8))
    cfg = GradualConfig(target=0.5, steps=20, prune_every=2, learning_rate=1e-3, decay_after_pruning=decay)
    x = torch.randn(4, 8)
    log = prune_on_schedule(
        model,
        itertools.repeat({"x": x}),
        lambda batch: {"loss": model(batch["x"]).pow(2).mean()},
        lambda target: sparsity.magnitude_prune_(model, target, ["0.weight"]),
        cfg,
    )
    rates = {entry["step"]: entry["lr"] for entry in log}
    last_cut = cfg.window[1]
    assert all(rate == pytest.approx(1e-3) for step, rate in rates.items() if step <= last_cut)
    assert (rates[cfg.steps - 1] < 0.25e-3) == decay  # 1 - 5/6 of the rate at the last of 6 recovery steps
    assert float((model[0].weight == 0).float().mean()) == pytest.approx(0.5)


def test_cli_block_shapes_prune_whole_blocks_or_name_the_bad_size(tmp_path: Path) -> None:
    """`sparsify --block 4 --block_rows 16`: the saved model's zeros come in whole 16 x 4 blocks and the report
    records the shape; a shape that does not tile a layer is a one-line error naming the flag and the layer."""
    from safetensors.torch import load_file

    base = [sys.executable, "-m", "pruneofa", "sparsify", "tiny-bert", "--sparsity", "0.75", "--block", "4"]
    done = subprocess.run([*base, "--block_rows", "16", "--output_dir", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "b" / "sparsity.json").read_text())
    assert (report["block"], report["block_rows"]) == (4, 16) and report["overall"] == pytest.approx(0.75, abs=0.01)
    weights = load_file(str(tmp_path / "b" / "model.safetensors"))
    for name in report["layers"]:
        kept = weights[name] != 0
        blocks = kept.reshape(kept.shape[0] // 16, 16, -1, 4).transpose(1, 2).flatten(2)
        assert torch.all(blocks.all(dim=-1) | ~blocks.any(dim=-1)), name
    bad = subprocess.run([*base, "--block_rows", "5", "--output_dir", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--block_rows 5:" in bad.stderr and "output features, not a multiple of 5" in bad.stderr
    assert not (tmp_path / "x").exists()
