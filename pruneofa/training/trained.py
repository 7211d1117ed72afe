"""A finished `pruneofa train` output folder, checked, and rebuilt as the torch model it was trained as.

Stage-2 folders (quantization.safetensors + meta["quantization"]) rebuild as the QAT model: float weights, then
prepare_qat_ and the saved observer state, so the torch model scores exactly what training reported.
`float_only=True` loads the same float weights without fake quantization (the "float shadow" of a QAT model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.core.errors import ModelError
from pruneofa.data.tasks import TaskSpec, get_task
from pruneofa.models.folder import META_FILE, QUANT_FILE, read_meta, verify_files

DEFAULT_MAX_SEQ_LENGTH = 128


@dataclass(frozen=True)
class TrainedFolder:
    folder: Path
    meta: dict[str, Any]
    task: TaskSpec

    @property
    def is_qat(self) -> bool:
        """Trained with int8 QAT: has the observer state and the quantization record."""
        return bool(self.meta.get("quantization")) and (self.folder / QUANT_FILE).is_file()

    @property
    def max_seq_length(self) -> int:
        """The length the model was trained and scored with (the export's model_max_length)."""
        return int(self.meta.get("args", {}).get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH)

    def load_model(self, float_only: bool = False) -> Any:
        """The torch classifier in eval mode: QAT (as trained) for a stage-2 folder unless `float_only`."""
        from transformers import AutoModelForSequenceClassification

        from pruneofa.compress.quantization import QuantConfig, load_quant_state_, prepare_qat_
        from pruneofa.models.folder import load_quant_state

        try:
            model = AutoModelForSequenceClassification.from_pretrained(str(self.folder))
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelError(f"{self.folder}: the model cannot be loaded ({first}); re-run that stage") from None
        if self.is_qat and not float_only:
            state = load_quant_state(self.folder)
            assert state is not None
            prepare_qat_(model, QuantConfig(**self.meta["quantization"].get("config", {})))
            load_quant_state_(model, state)
        return model.eval()


def is_training_output(folder: Path) -> bool:
    return (folder / META_FILE).is_file()


def open_trained(folder: Path) -> TrainedFolder:
    """Check a training output folder (commit marker, file hashes, config) before anything is built from it."""
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder; pass the --output_dir of a `pruneofa train` run")
    if not is_training_output(folder):
        raise ModelError(
            f"{folder}: no {META_FILE}, so it is not a finished `pruneofa train` output; check the path "
            "or finish that run"
        )
    meta = read_meta(folder)
    verify_files(folder, meta)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: no config.json; the checkpoint is incomplete, re-run that stage")
    task_name = meta.get("task_name")
    if not isinstance(task_name, str):
        raise ModelError(f"{folder / META_FILE}: no task_name; the checkpoint is corrupt, re-run that stage")
    return TrainedFolder(folder, meta, get_task(task_name))
