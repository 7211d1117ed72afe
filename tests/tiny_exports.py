"""A dense FP32 export and a 90%-sparse int8 export of the built-in tiny BERT, made in-process in ~20 s without
training (pruneofa.bench.models), shared by the bench and gate tests
(the `tiny_exports` session fixture in conftest.py)."""

from __future__ import annotations

from pathlib import Path

TASK = "rotten_tomatoes"
SEQ = 32


def make_exports(root: Path) -> Path:
    from pruneofa.bench.inputs import dev_texts
    from pruneofa.bench.models import calibration_batches, classifier, save_training_output, sparse_int8
    from pruneofa.export.exporter import ExportConfig, export
    from pruneofa.models.loading import resolve_model

    tiny = resolve_model("tiny-bert")
    dense = classifier(tiny, None, TASK)
    student = sparse_int8(dense, 0.9, calibration_batches(tiny, dev_texts(None)[:64], SEQ, 4))
    save_training_output(dense, tiny, root / "dense", TASK, SEQ)
    save_training_output(student, tiny, root / "stage2", TASK, SEQ)
    export(root / "dense", ExportConfig(output_dir=root / "fp32", verify=False))
    export(root / "stage2", ExportConfig(output_dir=root / "int8", verify=False))
    return root
