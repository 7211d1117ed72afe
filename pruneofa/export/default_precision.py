"""Whether the int8 export may run on OpenVINO at OpenVINO's default precision, checked on the dev set.

On CPUs with AVX512-BF16 or AMX, OpenVINO's default runs the float ops around the int8 Linears (LayerNorm,
GELU, softmax, the attention matmuls) in bf16; the int8 Linears stay int8. Measured on BERT-base with an AMX Xeon:
1.10x the f32-hint int8 model at batch 1, 1.18x at batch 8 (NOTES.md, issue 14). bf16 keeps 8 bits of mantissa,
so it is taken only where the dev score holds: `export` scores the int8 IR at the default precision on the dev
split, and it must pass the same tolerance against torch (`--tolerance`) as every engine. Its label agreement
with the f32-hint run is recorded beside it, not required: bf16 LayerNorm and softmax move near-tie logits (the
90% demo model: 99.30% of dev labels as with f32, accuracy 79.89 against torch's 80.12), as any engine's float
kernels do, and the score is what the user's tolerance is about. The verdict goes into the
manifest (verification.openvino_default_precision); `engines.open_engine` reads it: OpenVINO runs the export at
its default precision only where the check held, else with the f32 hint. Where OpenVINO's default is f32 here,
there is nothing to check and nothing changes. The sparse form gets the same check of its own
(verification.openvino_sparse_default_precision): its float ops are OpenVINO's too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.data.tasks import TaskSpec
from pruneofa.export.sparse_export import Score
from pruneofa.runtime.engines import EngineName, open_engine


def check_on_dev(
    folder: Path,
    task: TaskSpec,
    score: Score,
    logits: dict[str, np.ndarray],
    split: str,
    reference: float,
    tolerance: float,
    engine_name: EngineName = "openvino",
) -> dict[str, Any]:
    """The verification entry: `engine_name` (the IR, or the sparse form on openvino-sparse) at OpenVINO's default
    precision scored on `split`; `logits` holds the dev logits of the engines that ran (the f32-hint run of
    `engine_name` among them); `reference` is torch's main metric."""
    from pruneofa.data.metrics import main_metric_value
    from pruneofa.scoring import logit_agreement

    engine = open_engine(folder, engine_name, precision=None)  # None: OpenVINO's own default
    used = engine.describe()["inference_precision"]
    if used == "f32":
        reason = "OpenVINO's default is f32 on this CPU (no AVX512-BF16 / AMX-BF16): nothing to check"
        return {"held": False, "checked": False, "precision_used": used, "reason": reason}
    metrics, got = score(engine)
    value = main_metric_value(task, metrics[split])
    agreement = logit_agreement(logits[engine_name], got)["argmax_agreement"]
    held = value >= reference - tolerance
    facts: dict[str, Any] = {
        "held": held,
        "checked": True,
        "precision_used": used,
        "metrics": metrics,
        "label_agreement_with_f32": agreement,
    }
    if not held:
        facts["reason"] = (
            f"at {used}, {task.main_metric} {value:.4f} against torch's {reference:.4f} (allowed drop "
            f"{tolerance:.4f}): OpenVINO keeps the f32 hint"
        )
    return facts
