"""int8 QAT invariants: exact zeros, observers follow train/eval, state round-trips, ONNX export is int8."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from tiny import tiny_batch, tiny_bert
from torch import nn

from pruneofa.compress.quantization import (
    QATLinear,
    QuantConfig,
    int8_weight,
    is_quantized,
    load_quant_state_,
    prepare_qat_,
    quant_params,
    quant_state,
    set_observers_,
)
from pruneofa.compress.sparsity import capture_masks, magnitude_prune_, prunable_weight_names
from pruneofa.core.errors import ModelError


def _calibrate(model: nn.Module, batches: int = 3) -> None:
    """Forward passes in train mode update the observers; no optimizer, so weights do not move."""
    model.train()
    with torch.no_grad():
        for seed in range(batches):
            model(**tiny_batch(seed=seed))
    model.eval()


def test_prepare_replaces_every_linear_sharing_parameters() -> None:
    model = tiny_bert()
    weights = {n: p for n, p in model.named_parameters()}
    names = prepare_qat_(model, QuantConfig())
    assert len(names) == 14 and names[-1] == "classifier" and "bert.pooler.dense" in names
    assert all(type(model.get_submodule(n)) is QATLinear for n in names)
    assert not any(type(m) is nn.Linear for m in model.modules())
    # Same Parameter objects under the same names: masks and later optimizers keep working.
    assert all(model.get_parameter(n) is p for n, p in weights.items())
    assert is_quantized(model)
    with pytest.raises(ModelError, match="already prepared"):
        prepare_qat_(model, QuantConfig())


def test_quant_config_validation() -> None:
    with pytest.raises(ModelError, match="averaging_constant"):
        QuantConfig(averaging_constant=0.0)
    with pytest.raises(ModelError, match="'uint8'"):
        QuantConfig(activation_dtype="int8")


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_zeros_exact_where_pruned(per_channel: bool) -> None:
    model = tiny_bert()
    names = prunable_weight_names(model)
    magnitude_prune_(model, 0.9, names)
    masks = capture_masks(model, names)
    prepare_qat_(model, QuantConfig(weight_per_channel=per_channel))
    for name in names:
        layer = model.get_submodule(name.removesuffix(".weight"))
        assert isinstance(layer, QATLinear)
        q, scale = int8_weight(layer)
        assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
        assert scale.shape == ((layer.out_features,) if per_channel else (1,))
        # Survivors are the largest |w|, so none rounds to 0: int8 zeros are exactly the pruned weights.
        assert torch.equal(q != 0, masks[name])
        assert torch.equal(layer.quantized_weight() != 0, masks[name])
        column = scale.unsqueeze(1) if per_channel else scale
        torch.testing.assert_close(q.float() * column, layer.quantized_weight().detach())


def test_observers_update_in_train_and_freeze_in_eval() -> None:
    layer = QATLinear.from_linear(nn.Linear(4, 3), QuantConfig(averaging_constant=0.5))
    assert not layer.calibrated
    layer.train()
    layer(torch.tensor([[-1.0, 2.0, 0.0, 0.5]]))
    assert (layer.act_min.item(), layer.act_max.item()) == (-1.0, 2.0)  # the first batch sets the range
    layer(torch.tensor([[-3.0, 4.0, 0.0, 0.0]]))
    assert (layer.act_min.item(), layer.act_max.item()) == (-2.0, 3.0)  # then a moving average
    layer.eval()
    layer(torch.full((2, 4), 100.0))
    assert (layer.act_min.item(), layer.act_max.item()) == (-2.0, 3.0)
    layer.train()
    layer.observer_enabled = False
    layer(torch.full((2, 4), 100.0))
    assert (layer.act_min.item(), layer.act_max.item()) == (-2.0, 3.0)


def test_eval_before_calibration_is_an_error() -> None:
    model = tiny_bert()
    prepare_qat_(model, QuantConfig())
    with pytest.raises(ModelError, match="before it saw any training batch"):
        model(**tiny_batch())


def test_set_observers_freezes_whole_model() -> None:
    model = tiny_bert()
    prepare_qat_(model, QuantConfig())
    _calibrate(model, batches=1)
    state = quant_state(model)
    set_observers_(model, False)
    _calibrate(model, batches=2)
    assert all(torch.equal(state[k], v) for k, v in quant_state(model).items())


def test_straight_through_gradients_reach_weights() -> None:
    layer = QATLinear.from_linear(nn.Linear(8, 4), QuantConfig())
    layer.train()
    layer(torch.randn(5, 8)).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert layer.bias is not None and layer.bias.grad is not None


def test_qat_output_close_to_float() -> None:
    reference = tiny_bert()
    model = tiny_bert()
    prepare_qat_(model, QuantConfig())
    _calibrate(model)
    batch = tiny_batch(batch_size=8, seed=7)
    with torch.no_grad():
        want = reference.bert(**batch).last_hidden_state
        got = model.bert(**batch).last_hidden_state
    # 8-bit inputs and weights through 2 layers: well under 2% of the activations' spread.
    assert (got - want).abs().max() < 0.02 * want.std()
    layer = model.get_submodule("bert.encoder.layer.0.intermediate.dense")
    assert isinstance(layer, QATLinear)
    x = torch.randn(16, 32)
    layer.train()
    layer(x)
    layer.eval()
    with torch.no_grad():
        ref = torch.nn.functional.linear(x, layer.weight, layer.bias)
        # Relative RMS error: int8 rounding of 32 inputs and weights is a few percent per output.
        assert (layer(x) - ref).norm() < 0.05 * ref.norm()


def test_quant_state_round_trip_gives_identical_outputs() -> None:
    model = tiny_bert()
    prepare_qat_(model, QuantConfig())
    _calibrate(model)
    state = quant_state(model)
    assert len(state) == 28 and "classifier.act_min" in state
    fresh = tiny_bert()  # same seed: same weights
    prepare_qat_(fresh, QuantConfig())
    load_quant_state_(fresh, state)
    fresh.eval()
    batch = tiny_batch(seed=3)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, fresh(**batch).logits)
    report = quant_params(fresh)
    assert report["classifier"]["calibrated"] and 0 <= report["classifier"]["act_zero_point"] <= 255
    assert report["classifier"]["weight_scale_min"] <= report["classifier"]["weight_scale_max"]


def test_load_quant_state_names_bad_keys() -> None:
    model = tiny_bert()
    prepare_qat_(model, QuantConfig())
    state = quant_state(model)
    missing = dict(state)
    del missing["classifier.act_max"]
    with pytest.raises(ModelError, match=r"classifier\.act_max"):
        load_quant_state_(model, missing)
    with pytest.raises(ModelError, match=r"unknown key 'extra\.act_min'"):
        load_quant_state_(model, {**state, "extra.act_min": torch.tensor(0.0)})
    with pytest.raises(ModelError, match="shape"):
        load_quant_state_(model, {**state, "classifier.act_min": torch.zeros(2)})


def test_observer_buffers_in_state_dict() -> None:
    model = tiny_bert()
    prepare_qat_(model, QuantConfig())
    keys = model.state_dict().keys()
    assert "bert.encoder.layer.1.output.dense.act_min" in keys
    assert "bert.pooler.dense.act_max" in keys


def _int8_matmul_count(path: Path, disabled: list[str]) -> collections.Counter[str]:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    ops = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    return collections.Counter({k: v for k, v in ops.items() if "Integer" in k or k.startswith("QLinear")})


# The TorchScript exporter warns about HF's Python shape checks and advanced indexing: benign here.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:Exporting aten..index:UserWarning")
def test_qat_model_exports_to_int8_onnx(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = tiny_bert(num_labels=3)
    names = prunable_weight_names(model)
    masks = magnitude_prune_(model, 0.9, names)
    prepare_qat_(model, QuantConfig())
    _calibrate(model, batches=4)
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    batch = tiny_batch(batch_size=2, seq_len=16)
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        tuple(batch[k] for k in inputs),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=inputs,
        output_names=["logits"],
        dynamic_axes={**{k: {0: "batch", 1: "sequence"} for k in inputs}, "logits": {0: "batch"}},
    )
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["QuantizeLinear"] == ops["DequantizeLinear"] == 28  # input + weight for each of 14 Linears
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = tiny_batch(batch_size=5, seq_len=23, seed=9)  # other batch and length: axes are dynamic
    got = session.run(["logits"], {k: other[k].numpy() for k in inputs})[0]
    with torch.no_grad():
        want = model(**other).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-3)
    default = _int8_matmul_count(path, disabled=[])
    # ORT's MatMulAddFusion turns the 2-D pooler/classifier MatMul+Add into a float Gemm before the QDQ
    # fusions run; with it disabled all 14 Linears run as int8.
    unfused = _int8_matmul_count(path, disabled=["MatMulAddFusion"])
    print(f"int8 matmuls, ORT_ENABLE_ALL: {dict(default)}; without MatMulAddFusion: {dict(unfused)}")
    assert sum(default.values()) >= 12 and sum(unfused.values()) == 14
    assert all(torch.equal(model.get_parameter(n) != 0, m) for n, m in masks.items())
