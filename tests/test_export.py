import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

from tests.conftest import compose_config
from wmseg.export.onnx import contract_metadata, export_onnx, read_metadata
from wmseg.export.quantize import quantize_int8
from wmseg.inference import OnnxPredictor
from wmseg.models import WatermarkUnet
from wmseg.tasks.export import export


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    net = WatermarkUnet("resnet18", decoder_channels=(32, 16, 8, 8, 8)).eval()
    meta = contract_metadata(0.4, net.stride, {"encoder_name": "resnet18"})
    path = export_onnx(net, tmp_path_factory.mktemp("onnx") / "model.onnx", meta, sample_hw=(64, 64))
    return net, path


def test_onnx_contract(tiny_onnx):
    _, path = tiny_onnx
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "image" and out.name == "logits"
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[1].dim_value == 3 and all(in_dims[i].dim_param for i in (0, 2, 3))  # N, H, W dynamic
    meta = read_metadata(path)
    assert meta["threshold"] == "0.4" and meta["stride"] == "32" and meta["wmseg_version"]
    assert yaml.safe_load(meta["model_config"]) == {"encoder_name": "resnet18"}
    assert not list(path.parent.glob(".*.tmp"))


def test_onnx_parity_at_other_shapes(tiny_onnx):
    net, path = tiny_onnx
    predictor = OnnxPredictor(path)
    assert predictor.threshold == pytest.approx(0.4) and predictor.stride == 32
    for shape in ((1, 3, 96, 160), (3, 3, 128, 64)):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = net(x).numpy()
        got = predictor.logits(x.numpy())
        assert got.shape == ref.shape == (shape[0], 1, *shape[2:])
        assert np.abs(got - ref).max() < 1e-3


def test_int8_file_and_mask_agreement(tiny_onnx, tmp_path):
    _, path = tiny_onnx
    rng = np.random.default_rng(0)
    calib = [rng.random((2, 3, 64, 64), dtype=np.float32) for _ in range(4)]
    int8 = quantize_int8(path, tmp_path / "model.int8.onnx", calib)
    model = onnx.load(str(int8))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert read_metadata(int8)["threshold"] == "0.4"
    x = rng.random((2, 3, 64, 96), dtype=np.float32)
    fp32 = ort.InferenceSession(str(path)).run(None, {"image": x})[0]
    q = ort.InferenceSession(str(int8)).run(None, {"image": x})[0]
    assert q.shape == fp32.shape
    # Random weights give logits near 0 everywhere; compare values, not thresholded masks.
    assert np.corrcoef(q.ravel(), fp32.ravel())[0, 1] > 0.95


def test_int8_weight_type_reaches_the_graph_and_bad_names_are_rejected(tiny_onnx, tmp_path):
    _, path = tiny_onnx
    calib = [np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32) for _ in range(2)]
    int8 = quantize_int8(path, tmp_path / "u8u8.onnx", calib, weight_type="uint8", reduce_range=True)
    model = onnx.load(str(int8))
    inits = {t.name: t for t in model.graph.initializer}
    # Weights are stored quantized (biases as int32): DequantizeLinear inputs that are initializers.
    stored = {
        inits[n.input[0]].data_type
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    }
    assert onnx.TensorProto.UINT8 in stored and onnx.TensorProto.INT8 not in stored
    with pytest.raises(ValueError, match=re.escape("export.int8.weight_type='int4'")):
        quantize_int8(path, tmp_path / "bad.onnx", calib, weight_type="int4")
    assert not (tmp_path / "bad.onnx").exists()


def test_keep_float_leaves_the_stem_and_head_convs_unquantized(tiny_onnx, tmp_path):
    _, path = tiny_onnx
    calib = [np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32) for _ in range(2)]

    def weight_is_quantized(model: onnx.ModelProto) -> list[bool]:
        # A quantized Conv reads its weight through a DequantizeLinear; a float one directly.
        dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        return [n.input[1] in dq for n in model.graph.node if n.op_type == "Conv"]

    plain = weight_is_quantized(onnx.load(str(quantize_int8(path, tmp_path / "a.onnx", calib))))
    kept = onnx.load(str(quantize_int8(path, tmp_path / "b.onnx", calib, keep_float=["stem", "head"])))
    assert len(plain) >= 3 and all(plain)
    assert weight_is_quantized(kept) == [False] + [True] * (len(plain) - 2) + [False]
    assert "float=stem,head" in read_metadata(tmp_path / "b.onnx")["quantization"]
    with pytest.raises(ValueError, match=re.escape("export.int8.keep_float")):
        quantize_int8(path, tmp_path / "bad.onnx", calib, keep_float=["neck"])


@pytest.mark.slow
def test_export_task_end_to_end(exported):
    out, report = exported
    for name in ("model.onnx", "model.int8.onnx", "model.fp16.onnx"):
        assert (out / name).is_file()
    assert report["parity_max_abs_logit_diff"]["model.onnx"] < 1e-3
    fp16 = onnx.load(str(out / "model.fp16.onnx"))
    # fp16 inside, the contract's float32 at the edges.
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    assert report["parity_max_abs_logit_diff"]["model.fp16.onnx"] < 0.1
    # Converted from model.onnx, so it describes itself the same way.
    assert read_metadata(out / "model.fp16.onnx") == read_metadata(out / "model.onnx")
    assert 0.0 <= report["mean_mask_iou_vs_fp32_onnx"]["model.int8.onnx"] <= 1.0
    assert report["int8_val_iou_drop"] is not None
    # The INT8 file is also measured without U8S8 saturation, as a row of its own.
    precise = "model.int8.onnx, x64_quant_precision"
    assert (
        0.0 <= report["mean_mask_iou_vs_fp32_onnx"][precise] <= 1.0
        and precise in report["parity_max_abs_logit_diff"]
    )
    assert json.loads((out / "export_report.json").read_text())["threshold"] == report["threshold"]
    assert "model.int8.onnx" in (out / "export_report.md").read_text()


@pytest.mark.slow
def test_static_export_without_int8_has_fixed_shape_and_passes_its_checks(trained_ckpt, tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            f"ckpt={trained_ckpt}",
            "sample_size=64",
            "dynamic=false",
            "parity.val_samples=4",
            "int8.enabled=false",
        ],
        config_name="export",
    )
    report = export(cfg)
    (inp,) = onnx.load(str(tmp_path / "model.onnx")).graph.input
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, 64, 64]
    assert report["dynamic"] is False and report["parity_shape"] == [1, 3, 64, 64]
    assert report["parity_max_abs_logit_diff"]["model.onnx"] < 1e-3
    assert report["val_samples"] == 4
    # int8.enabled=false: the fp32 model alone.
    assert sorted(p.name for p in tmp_path.glob("model*.onnx")) == ["model.onnx"]
    assert list(report["parity_max_abs_logit_diff"]) == ["model.onnx"] and report["int8_val_iou_drop"] is None


def test_export_missing_checkpoint(tmp_path):
    from wmseg.inference import CheckpointError

    cfg = compose_config(tmp_path, [f"ckpt={tmp_path}/nope.ckpt"], config_name="export")
    with pytest.raises(CheckpointError, match=r"nope\.ckpt"):
        export(cfg)


def test_x64_quant_precision_keeps_a_full_scale_int8_conv_exact(tmp_path):
    # A 1x1 conv summing 16 channels of full-scale input with full-scale weights: U8S8
    # pair sums (2 x 255 x 127) overflow int16 on x86 CPUs without VNNI; with
    # x64_quant_precision the INT8 model must give the float answer (16) on any CPU.
    w = onnx.numpy_helper.from_array(np.ones((1, 16, 1, 1), np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["image", "w"], ["logits"])],
        "full_scale",
        [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 16, 4, 4])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 1, 4, 4])],
        [w],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10)
    for key, value in contract_metadata(0.5, 1, {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, tmp_path / "fp32.onnx")
    x = np.ones((1, 16, 4, 4), np.float32)
    int8 = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", [x])
    precise = OnnxPredictor(int8, providers=["CPUExecutionProvider"], x64_quant_precision=True)
    assert precise.session.get_session_options().get_session_config_entry("session.x64quantprecision") == "1"
    np.testing.assert_allclose(precise.logits(x), 16.0, rtol=0.02)
