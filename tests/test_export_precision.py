"""FP16 and INT8 variants: what stays in FP32 / out of quantization, the two INT8 flavours, and their
agreement with FP32 (on the export's parity images and at sizes and batches never seen)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from export_fixtures import images, ort_run
from onnx import TensorProto, numpy_helper

import pvt_deploy
from pvt_deploy.export.parity import compare_outputs
from pvt_deploy.tasks.preprocess import Letterbox
from pvt_deploy.utils import onnx_model

pytest_plugins = ["export_fixtures"]


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def test_fp16_keeps_layernorm_softmax_and_io_in_fp32(det_artifact) -> None:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(det_artifact.folder / "model.fp16.onnx")))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input,
                                                             *model.graph.output)}
    inits = {i.name: i.data_type for i in model.graph.initializer}
    types.update(inits)
    kept = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax", "Exp", "TopK", "Sigmoid")]
    assert kept
    for n in kept:
        assert types.get(n.input[0]) == TensorProto.FLOAT, (n.op_type, n.name)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert sum(inits.get(n.input[1]) == TensorProto.FLOAT16 for n in convs) == len(convs)
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in (*model.graph.input, *model.graph.output))
    record = det_artifact.manifest["precision"]["fp16"]
    assert {"LayerNormalization", "Softmax"} <= set(record["fp32_ops"]) and record["fp32_tail_nodes"] > 0


def test_int8_flavours(det_artifact) -> None:
    for name, act_type in (("model.int8.trt.onnx", TensorProto.INT8), ("model.int8.onnx", TensorProto.UINT8)):
        model = onnx.load(str(det_artifact.folder / name))
        inits = {i.name: i for i in model.graph.initializer}
        producers = _producers(model)
        quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
        assert quants, name
        for q in quants:  # activations (weights are stored quantized, behind DequantizeLinear only)
            zp = inits[q.input[2]]
            assert zp.data_type == act_type, name
            if act_type == TensorProto.INT8:
                assert not numpy_helper.to_array(zp).any(), "TensorRT flavour must be symmetric"
        per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits
                       and numpy_helper.to_array(inits[n.input[1]]).size > 1]
        assert per_channel, f"{name}: weights should be quantized per channel"
        for n in model.graph.node:  # LayerNorm, Softmax and Resize stay float
            if n.op_type in ("LayerNormalization", "Softmax", "Resize"):
                src = producers.get(n.input[0])
                assert src is None or src.op_type != "DequantizeLinear", (name, n.op_type)
        # Q/DQ sits on the inputs of Conv/MatMul/Gemm only: every dequantized tensor feeds only those,
        # except (CPU flavour) the score logits, rounded over the fixed score window.
        dq_sources = {n.output[0]: producers[n.input[0]].input[0] for n in model.graph.node
                      if n.op_type == "DequantizeLinear" and n.input[0] in producers}
        readers = {(n.op_type, dq_sources[i]) for n in model.graph.node for i in n.input if i in dq_sources}
        others = {src for op, src in readers if op not in ("Conv", "MatMul", "Gemm")}
        if name == "model.int8.onnx":
            assert others and all("/retina_cls" in src for src in others), others
            q = next(n for n in quants if n.input[0] in others)
            scale = float(numpy_helper.to_array(inits[q.input[1]]))
            assert scale == pytest.approx(2 * 9.21 / 255, rel=1e-4)  # SCORE_LOGIT_WINDOW, not min/max
        else:
            assert not others, (name, others)
        # TensorRT's ONNX parser dequantizes int8 only: the TensorRT flavour keeps its biases float,
        # the CPU flavour stores them int32 (ONNX Runtime fuses those into QLinearConv)
        dq_types = {inits[n.input[0]].data_type for n in model.graph.node
                    if n.op_type == "DequantizeLinear" and n.input[0] in inits}
        if act_type == TensorProto.INT8:
            assert dq_types == {TensorProto.INT8}, (name, dq_types)
        else:
            assert TensorProto.INT32 in dq_types, (name, dq_types)
    record = det_artifact.manifest["precision"]["int8"]
    assert record["cpu"]["method"] == "static" and record["trt"]["activations"] == "int8 symmetric"
    assert record["cpu"]["score_logit_window"] == [-9.21, 9.21] and record["cpu"]["float_inputs_restored"] > 0
    # quantized on the CPU INT8 layout of the float export: attention and GELU fused, depthwise MLP convs
    # channels-last; the patch convs stay float convs (static plan)
    assert record["cpu"]["layout"] == {"patch_matmuls": 0, "depthwise_channels_last": 8, "sra_attention": 8, "gelu": 8}
    cpu_ops = [n.op_type for n in onnx.load(str(det_artifact.folder / "model.int8.onnx")).graph.node]
    assert cpu_ops.count("MultiHeadAttention") == 8 and cpu_ops.count("Gelu") == 8 and "Erf" not in cpu_ops
    assert "layout" not in record["trt"] and "MultiHeadAttention" not in {
        n.op_type for n in onnx.load(str(det_artifact.folder / "model.int8.trt.onnx")).graph.node}
    assert record["calibration"]["source"] == "bundled sample images" and record["calibration"]["images"] == 3


def test_onnx_files_keep_the_boundary_import_only_used_opsets_and_name_their_producer(det_artifact) -> None:
    """Netron and ``polygraphy inspect model`` showed model.int8.trt.onnx importing com.microsoft,
    ai.onnx.training, org.pytorch.aten and five more domains it never uses, and outputs shaped
    (batch, 'TopK_745_o0__d0 + TopK_756_o0__d0 + ...', 4) where model.onnx says num_boxes: both
    came from ONNX Runtime's quantization pre-processing, whose graph the INT8 files are written from."""
    ref = onnx.load(str(det_artifact.folder / "model.onnx"))
    boundary = [(v.name, v.type) for v in (*ref.graph.input, *ref.graph.output)]
    assert [d.dim_param for d in ref.graph.output[0].type.tensor_type.shape.dim] == ["batch", "num_boxes", ""]
    for name in ("model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx"):
        model = onnx.load(str(det_artifact.folder / name))
        assert [(v.name, v.type) for v in (*model.graph.input, *model.graph.output)] == boundary, name
        used = {n.domain for n in model.graph.node} - {"", "ai.onnx"}
        declared = {o.domain for o in model.opset_import} - {"", "ai.onnx"}
        assert declared == used, (name, sorted(declared - used))
        onnx.checker.check_model(model, full_check=True)
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx"):
        # Netron and polygraphy showed "pvt-deploy 2.13.0": torch's version (quantize_dynamic's "0.1.0")
        model = onnx.load(str(det_artifact.folder / name), load_external_data=False)
        assert (model.producer_name, model.producer_version) == ("pvt-deploy", pvt_deploy.__version__), name


def test_parity_figures_in_manifest(det_artifact) -> None:
    parity = det_artifact.manifest["parity"]
    assert set(parity) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx"}
    assert all(r["passed"] and r["agreement_gated"] for r in parity.values())
    assert parity["model.onnx"]["outputs"]["scores"]["max_abs"] < 1e-5
    assert parity["model.fp16.onnx"]["outputs"]["scores"]["cosine"] > 0.9999
    assert parity["model.fp16.onnx"]["agreement"] >= 0.97
    for name in ("model.int8.onnx", "model.int8.trt.onnx"):
        assert parity[name]["outputs"]["scores"]["cosine"] > 0.999
        assert parity[name]["agreement"] >= (0.97 if name == "model.int8.onnx" else 0.9)  # 0.992 / 0.992 here
        assert parity[name]["task"]["required_ref"] > 50  # the comparison is about real detections
    int8 = det_artifact.manifest["precision"]["int8"]
    cpu = int8["cpu"]
    # the ratio is of the best calls in turn after the gate, not of the gate's few cold ones
    assert cpu["cpu_ort_latency_s"] == parity["model.int8.onnx"]["best_latency_s"]
    assert cpu["cpu_ort_speedup_vs_fp32"] == pytest.approx(
        parity["model.onnx"]["best_latency_s"] / cpu["cpu_ort_latency_s"], rel=2e-3)
    assert "cpu_ort_speedup_vs_fp32" not in int8["trt"]  # a GPU file: its CPU speed means nothing


def test_variants_at_unseen_sizes_and_batches(det_artifact) -> None:
    post = det_artifact.manifest["postprocess"]
    x = images(2, 224, 96, seed=7)
    metas = [Letterbox((224, 96), (224, 96), (224, 96))] * 2
    ref = ort_run(det_artifact.folder / "model.onnx", x)
    for name, min_cos, min_agree in (("model.fp16.onnx", 0.9999, 0.97), ("model.int8.onnx", 0.999, 0.85),
                                     ("model.int8.trt.onnx", 0.999, 0.85)):
        got = ort_run(det_artifact.folder / name, x)
        assert got["boxes"].shape == ref["boxes"].shape and got["scores"].dtype == np.float32
        report = compare_outputs("detect", ref, got, metas, post)
        assert report["outputs"]["scores"]["cosine"] > min_cos, (name, report["outputs"])
        assert report["agreement"] >= min_agree, (name, report["task"])


def _two_tails_graph() -> onnx.ModelProto:
    """A conv whose output two float32-kept ops read (Sigmoid and Exp), as a detector head's is."""
    from onnx import helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.2).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Exp", ["c"], ["e"], name="exp"),
             helper.make_node("Add", ["s", "e"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    return onnx_model(graph)


def test_fp16_merges_the_repeated_casts_older_onnxruntime_writes() -> None:
    """onnxruntime <= 1.30's converter gives each float32 reader of an FP16 tensor its own Cast, all
    writing one name: the checker refuses that graph. The copies are merged (found on a GPU box whose
    image had onnxruntime 1.30, exporting ``pvt_v2_b0``'s FP16 graph)."""
    import onnxruntime as ort
    from onnx import helper

    from pvt_deploy.export.precision import _merge_duplicate_casts, convert_fp16

    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    fp32 = _two_tails_graph()
    ref = ort.InferenceSession(fp32.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    half, _ = convert_fp16(fp32, keep_fp32_ops=["Sigmoid", "Exp", "Add"], keep_tail=False)
    onnx.checker.check_model(half)
    casts = [n for n in half.graph.node if n.op_type == "Cast" and n.input[0] == "c"]
    assert len(casts) == 1  # one shared Cast for both readers
    # what onnxruntime 1.30 writes: a second, identical Cast of the same name
    old = onnx.ModelProto.FromString(half.SerializeToString())
    old.graph.node.append(helper.make_node("Cast", ["c"], [casts[0].output[0]], to=TensorProto.FLOAT, name="dup"))
    old.graph.value_info.extend([vi for vi in old.graph.value_info if vi.name == casts[0].output[0]])
    with pytest.raises(onnx.checker.ValidationError, match="static single assignment|single static assignment"):
        onnx.checker.check_model(old)
    assert _merge_duplicate_casts(old) == 1 and _merge_duplicate_casts(old) == 0
    onnx.checker.check_model(old)
    out = ort.InferenceSession(old.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert out.dtype == np.float32 and np.abs(out - ref).max() < 1e-2
    # a Cast of another tensor to the same name is not a copy: left for the checker to refuse
    clash = onnx.ModelProto.FromString(half.SerializeToString())
    clash.graph.node.append(helper.make_node("Cast", ["x"], [casts[0].output[0]], to=TensorProto.FLOAT, name="clash"))
    assert _merge_duplicate_casts(clash) == 0


def test_fp16_normalises_the_input_in_float32() -> None:
    """The input normalisation runs in float32 and the pixels reach it unrounded: in float16 a pixel
    equal to the mean normalised to rounding noise instead of 0, and a LayerNorm over the patch
    tokens of such an area (a letterbox border, a wall) scaled that noise up to O(1) — found as a
    failed FP16 parity gate of ``pvt_v2_b0-features``, whose random conv biases are 0."""
    import onnxruntime as ort
    from onnx import helper

    from pvt_deploy.export.precision import convert_fp16

    rng = np.random.default_rng(0)
    mean = np.array([123.675, 116.28, 103.53], np.float32).reshape(1, 3, 1, 1)
    inits = [numpy_helper.from_array(mean, "mean"),
             numpy_helper.from_array((1 / np.array([58.395, 57.12, 57.375], np.float32)).reshape(1, 3, 1, 1), "inv_std"),
             numpy_helper.from_array(rng.standard_normal((16, 3, 4, 4)).astype(np.float32) * 0.1, "w"),
             numpy_helper.from_array(np.zeros(16, np.float32), "b"),
             numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
             numpy_helper.from_array(np.array([1, 16, -1], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Sub", ["images", "mean"], ["centred"]),
             helper.make_node("Mul", ["centred", "inv_std"], ["normed"]),
             helper.make_node("Conv", ["normed", "w", "b"], ["patches"], strides=[4, 4]),
             helper.make_node("Reshape", ["patches", "shape"], ["flat"]),
             helper.make_node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),
             helper.make_node("LayerNormalization", ["tokens", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-6),
             helper.make_node("MatMul", ["ln", "fc"], ["out"])]
    graph = helper.make_graph(nodes, "norm", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    fp32 = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fp32.ir_version = 8
    half, record = convert_fp16(fp32)
    onnx.checker.check_model(half)
    assert record["fp32_head_nodes"] == 2  # Sub and Mul
    x = np.broadcast_to(mean, (1, 3, 16, 16)).copy()  # every pixel the mean colour, as float32 gives it
    x[..., :8, :] = rng.uniform(0, 255, (1, 3, 8, 16))  # and a textured half
    run = {name: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
           for name, m in (("fp32", fp32), ("fp16", half))}
    flat = run["fp32"][0, 8:]  # tokens of the uniform half: LayerNorm of a zero vector is beta (0)
    assert np.abs(flat).max() == 0
    assert np.abs(run["fp16"][0, 8:]).max() < 1e-3
    assert np.abs(run["fp16"] - run["fp32"]).max() < 0.05 * np.abs(run["fp32"]).max()
