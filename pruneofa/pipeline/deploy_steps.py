"""The pipeline's deployment steps: export (verified), bench, gate. Each writes into its own folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pruneofa.core.files import write_json_atomic
from pruneofa.pipeline.recipe import Recipe, build
from pruneofa.pipeline.step import Step

# Every step's config is built when its Step is made (plan time), not when it runs: `--dry_run` then runs the
# configs' own checks too, and a real run fails before its first step instead of hours into it.

EVAL_FILE = "eval.json"
GATE_FILE = "gate.json"


def export_step(recipe: Recipe, source: Step, out: Path, precision: str) -> Step:
    from pruneofa.export.exporter import ExportConfig
    from pruneofa.scoring import EvalConfig

    vfile = Path(recipe.data.validation_file) if recipe.data.validation_file else None
    export_cfg = build(
        recipe,
        f"export-{precision}",
        "[export], [data]",
        lambda: ExportConfig(
            output_dir=out,
            formats=recipe.export.formats,
            precision=precision,  # type: ignore[arg-type]  # "int8" or "fp32", set by plan()
            overwrite=True,
            validation_file=vfile,
            max_eval_samples=recipe.data.max_eval_samples,
        ),
    )
    eval_cfg = build(
        recipe,
        f"export-{precision}",
        "[data]",
        lambda: EvalConfig(  # onnxruntime named: the report's scores must not depend on a bench record
            task_name=recipe.data.task_name,
            validation_file=vfile,
            max_eval_samples=recipe.data.max_eval_samples,
            engine="onnxruntime",
        ),
    )

    def run() -> dict[str, Any]:
        from pruneofa.export.exporter import export
        from pruneofa.scoring import evaluate_folder

        manifest = export(source.output, export_cfg)
        # The exported model's own dev score, in the `pruneofa eval` format the gate reads.
        scores = evaluate_folder(out, eval_cfg)
        write_json_atomic(out.parent / f"{out.name}.{EVAL_FILE}", scores)
        return {"precision": precision, "verification": manifest.get("verification"), "eval": scores}

    inputs = {"source": source.fingerprint, "export": recipe.section_json("export"), "precision": precision}
    return Step(f"export-{precision}", inputs, out, run)


BUNDLE_FILE = "model.tar.gz"


def bundle_step(export: Step, out: Path) -> Step:
    """The sparse-int8 export as one file to ship (`out/model.tar.gz`)."""

    from pruneofa.export.bundle import BundleConfig

    cfg = BundleConfig(output=out / BUNDLE_FILE, overwrite=True)

    def run() -> dict[str, Any]:
        from pruneofa.export.bundle import write_bundle

        out.mkdir(parents=True, exist_ok=True)
        doc = write_bundle(export.output, cfg)
        return {"file": doc["file"], "bytes": doc["bytes"]}

    return Step("bundle", {"export": export.fingerprint}, out, run)


def bench_step(recipe: Recipe, sparse: Step, dense: Step, teacher: Step, out: Path) -> Step:
    from pruneofa.bench.run import BenchConfig

    b = recipe.bench
    cfg = build(
        recipe,
        "bench",
        "[bench]",
        lambda: BenchConfig(
            batch_sizes=b.batch_sizes,
            seq_len=b.seq_len,
            threads=b.threads,
            duration=b.duration,
            iterations=b.iterations,
            torch_model=teacher.output,
        ),
    )

    def run() -> dict[str, Any]:
        from pruneofa.bench.report import write_outputs
        from pruneofa.bench.run import run_bench

        doc = run_bench(sparse.output, dense.output, cfg)
        write_outputs(doc, out, overwrite=True)
        return {
            "speedups": doc.get("speedups"),
            "results": {k: v.get("throughput_seq_s") for k, v in (doc.get("results") or {}).items()},
        }

    inputs = {"sparse": sparse.fingerprint, "dense": dense.fingerprint, "bench": recipe.section_json("bench")}
    return Step("bench", inputs, out, run)


def gate_step(recipe: Recipe, sparse: Step, teacher: Step, bench: Step, out: Path) -> Step:
    from pruneofa import gates

    rules = gates.parse_rules(recipe.gate, f"recipe {recipe.name} [gate]")

    def run() -> dict[str, Any]:
        root = out.parent
        ev = json.loads((root / f"{sparse.output.name}.{EVAL_FILE}").read_text())
        ref = json.loads((root / f"export-fp32.{EVAL_FILE}").read_text())
        doc = json.loads((bench.output / "bench.json").read_text())
        outcomes = gates.evaluate(rules, ev, ref, doc)
        rows = [
            {"rule": o.rule.name, "measured": o.measured, "limit": o.rule.limit, "passed": o.passed, "detail": o.detail}
            for o in outcomes
        ]
        verdict = {"passed": all(o.passed for o in outcomes), "rules": rows, "failures": gates.failures(outcomes)}
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / GATE_FILE, verdict)
        return verdict

    inputs = {
        "sparse": sparse.fingerprint,
        "teacher": teacher.fingerprint,
        "bench": bench.fingerprint,
        "gate": recipe.gate,
    }
    return Step("gate", inputs, out, run)
