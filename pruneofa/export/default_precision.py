"""Whether the int8 export may run on OpenVINO at OpenVINO's default precision, checked on the dev set.

On CPUs with AVX512-BF16 or AMX, OpenVINO's default runs the float ops around the int8 Linears (LayerNorm,
GELU, softmax, the attention matmuls) in bf16; the int8 Linears stay int8. Measured on BERT-base with an AMX Xeon:
1.10x the f32-hint int8 model at batch 1, 1.18x at batch 8 (NOTES.md, issue 14). bf16 keeps 8 bits of mantissa,
so it is taken only where the dev score holds: `export` scores the int8 IR at the default precision on the dev
split, and it must pass the same tolerance against torch as every engine, and predict the f32-hint OpenVINO run's
label on as many examples as the sparse form must (`sparse_export.required_agreement`). The verdict goes into the
manifest (verification.openvino_default_precision); `engines.open_engine` reads it: OpenVINO runs the export at
its default precision only where the check held, else with the f32 hint. Where OpenVINO's default is f32 here,
there is nothing to check and nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.data.tasks import TaskSpec
from pruneofa.export.sparse_export import Score, required_agreement
from pruneofa.runtime.engines import OpenVinoEngine, model_file


def check_on_dev(
    folder: Path,
    task: TaskSpec,
    score: Score,
    logits: dict[str, np.ndarray],
    split: str,
    reference: float,
    tolerance: float,
) -> dict[str, Any]:
    """The verification entry: OpenVINO at its default precision scored on `split`; `logits` holds the dev logits
    of the engines that ran (the f32-hint "openvino" among them); `reference` is torch's main metric."""
    from pruneofa.data.metrics import main_metric_value
    from pruneofa.scoring import logit_agreement

    engine = OpenVinoEngine(model_file(folder, "openvino"), None, None)
    used = engine.describe()["inference_precision"]
    if used == "f32":
        reason = "OpenVINO's default is f32 on this CPU (no AVX512-BF16 / AMX-BF16): nothing to check"
        return {"held": False, "checked": False, "precision_used": used, "reason": reason}
    metrics, got = score(engine)
    value = main_metric_value(task, metrics[split])
    agreement = logit_agreement(logits["openvino"], got)["argmax_agreement"]
    needed, _ = required_agreement(logits)
    held = value >= reference - tolerance and agreement >= needed
    facts: dict[str, Any] = {
        "held": held,
        "checked": True,
        "precision_used": used,
        "metrics": metrics,
        "label_agreement_with_f32": agreement,
        "agreement_needed": needed,
    }
    if not held:
        facts["reason"] = (
            f"at {used}, {task.main_metric} {value:.4f} (torch {reference:.4f}, allowed drop {tolerance:.4f}) and "
            f"{agreement:.2%} of labels equal to the f32 run's (needs {needed:.2%}): OpenVINO keeps the f32 hint"
        )
    return facts
