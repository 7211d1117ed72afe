"""The sparse form beside an int8 export: model.sparse.onnx, written from the export's QDQ model.onnx (every int8
Linear one SparseInt8Linear node holding K-group weights: `sparse_form.rewrite`), the facts the manifest records
("sparse_form": layers rewritten, weight bytes vs dense int8 bytes, group fill), and its checks.

Checked like the other engines, on the run graph and on the dev set: OpenVINO with pruneofa's extension
(`openvino-sparse`) must run every rewritten Linear with the extension's kernel and predict the QDQ model's label
(as the closest of onnxruntime and OpenVINO runs it) on at least `AGREEMENT` of the dev examples, or, where those
two engines agree with each other on fewer (the noise floor of int8 near ties across float kernels), on at least
as many; a failure refuses the export. The file does not depend on this machine, its check does: where the
extension cannot run here (not built, built against another OpenVINO) the file is still written and the manifest
says "verification skipped" with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.runtime.engines import OPENVINO_SPARSE, SPARSE_ONNX, Engine, open_engine, sparse_unavailable

AGREEMENT = 0.999  # share of dev examples whose label must be the QDQ model's (float rounding may flip a tie)
Score = Callable[[Engine], tuple[dict[str, Any], np.ndarray]]  # engine -> (metrics per split, dev logits)


def not_written(reason: str) -> dict[str, Any]:
    return {"written": False, "reason": reason}


def write(folder: Path, qdq_path: Path, quantized_linears: int) -> dict[str, Any]:
    """Write folder/model.sparse.onnx from the QDQ model at `qdq_path`; the manifest's "sparse_form" facts."""
    import onnx

    from pruneofa.kernels.openvino_op import DOMAIN, OP_TYPE
    from pruneofa.kernels.sparse_form import rewrite

    proto = onnx.load(str(qdq_path))
    facts = rewrite(proto)
    if not facts.layers:
        return not_written(f"no int8 Linear in {qdq_path.name} to rewrite")
    onnx.save(proto, str(folder / SPARSE_ONNX))
    return {
        "written": True,
        "file": SPARSE_ONNX,
        "engine": OPENVINO_SPARSE,
        "op": f"{DOMAIN}.{OP_TYPE}",
        "layers_rewritten": facts.layers,
        "ops": facts.ops,  # SparseInt8Linear nodes: query, key and value share one
        "quantized_linears": quantized_linears,
        "weight_bytes": facts.weight_bytes,  # K-group form: 4 int8 values + a uint16 group index per group
        "dense_int8_bytes": facts.dense_int8_bytes,
        "weight_bytes_ratio": facts.weight_bytes / facts.dense_int8_bytes if facts.dense_int8_bytes else None,
        "group_fill": facts.group_fill,  # non-empty 4-wide input groups / all groups
        "gelus_fused": facts.gelus_fused,  # FFN GELUs computed in their Linear's epilogue
        "u8_handoffs": facts.u8_handoffs,  # ops writing the next op's input already quantized (the FFN's first)
        "norms_fused": facts.norms_fused,  # residual Add + LayerNorm computed by the Linear's op before them
    }


def _skipped(facts: dict[str, Any], reason: str) -> None:
    facts["verification"] = {"status": "skipped", "reason": reason, "summary": f"verification skipped: {reason}"}


def check_runtime(folder: Path, facts: dict[str, Any]) -> bool:
    """Whether the sparse form can be run here; when it can, it must run every rewritten Linear in the
    extension's kernel (facts["runtime"] says what ran); when it cannot, facts say why."""
    problem = sparse_unavailable()
    if problem:
        _skipped(facts, problem)
        return False
    info = open_engine(folder, OPENVINO_SPARSE).describe()
    if info["sparse_linears"] < facts["layers_rewritten"]:
        raise ModelError(
            f"{OPENVINO_SPARSE} runs {info['sparse_linears']} of the {facts['layers_rewritten']} rewritten Linears "
            f"of {SPARSE_ONNX} in pruneofa's kernel; the export is refused (pass --no_sparse_form to export without "
            "it, and report this with the versions)"
        )
    facts["runtime"] = {**info, "model": Path(info["model"]).name}
    return True


def skip_dev_check(facts: dict[str, Any], reason: str) -> None:
    """The export's dev-set check did not run (no dev data, --no_verify): nor does the sparse form's."""
    if facts.get("runtime"):
        _skipped(facts, f"not checked on dev data: {reason}")


def required_agreement(logits: dict[str, np.ndarray]) -> tuple[float, float | None]:
    """(label agreement the sparse form needs, the QDQ engines' agreement with each other or None).

    AGREEMENT, unless the two engines that ran the same QDQ file already disagree more than that on these
    examples: then their agreement is the bar. The sparse form is the same int8 arithmetic, but its inputs come
    from OpenVINO's float kernels (LayerNorm, GELU, attention) and so does any engine's: a float rounding apart
    flips a u8 activation at a rounding tie, which moves near-tie logits (measured on a 90% MiniLM: onnxruntime and
    OpenVINO agree on 99.69% of rotten_tomatoes dev labels running the very same QDQ file)."""
    from pruneofa.scoring import logit_agreement

    if "onnxruntime" not in logits or "openvino" not in logits:
        return AGREEMENT, None
    between = logit_agreement(logits["onnxruntime"], logits["openvino"])["argmax_agreement"]
    return min(AGREEMENT, between), between


def check_on_dev(
    folder: Path, facts: dict[str, Any], score: Score, logits: dict[str, np.ndarray], split: str, output_dir: Path
) -> dict[str, Any]:
    """Score the sparse form on the dev split and compare its labels with the QDQ model's on each engine that ran
    it (`logits` holds the dev logits of torch and of those engines): it must agree with the closest of them on
    `required_agreement` of the examples; its verification entry, or the refusal."""
    from pruneofa.scoring import logit_agreement

    metrics, got = score(open_engine(folder, OPENVINO_SPARSE))
    engines = [e for e in ("openvino", "onnxruntime") if e in logits]  # a tie keeps OpenVINO: same kernels
    agreements = {e: logit_agreement(logits[e], got) for e in engines}
    reference = max(engines, key=lambda e: agreements[e]["argmax_agreement"])
    same = agreements[reference]
    needed, between = required_agreement(logits)
    n = len(got)
    if same["argmax_agreement"] < needed:
        differ = round((1 - same["argmax_agreement"]) * n)
        raise PruneofaError(
            f"export verification failed: {SPARSE_ONNX} ({OPENVINO_SPARSE}) predicts another label than the QDQ "
            f"model on {reference} for {differ} of {n} {split} examples (agreement {same['argmax_agreement']:.2%}, "
            f"needs >= {needed:.2%}); nothing was written to {output_dir}; pass --no_sparse_form to export "
            "without the sparse form (and report this with the versions)"
        )
    check = {
        "status": "passed",
        "qdq_engine": reference,
        "num_examples": n,
        "argmax_agreement": same["argmax_agreement"],
        "max_abs_diff": same["max_abs_diff"],
        "required_agreement": needed,
        "qdq_engines_agreement": between,
        "agreement_by_engine": {e: a["argmax_agreement"] for e, a in agreements.items()},
        "summary": f"verified: the label of the QDQ model on {reference} for {same['argmax_agreement']:.2%} of "
        f"{n} {split} examples (needed {needed:.2%})",
    }
    facts["verification"] = check
    logits[OPENVINO_SPARSE] = got  # for the default-precision check that follows
    return {"metrics": metrics, **logit_agreement(logits["torch"], got), "vs_qdq": {**same, "engine": reference}}
