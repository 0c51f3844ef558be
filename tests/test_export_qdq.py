"""The QDQ writer and calibration (pvt_deploy.export.qdq) against ONNX Runtime's own quantizer.

The exporter writes its static INT8 graphs itself because onnxruntime's ``quantize_static`` took
~25 s per pvt_small graph; what it writes must be what ``quantize_static`` writes for the same
settings and ranges, node for node and integer for integer. Ranges are handed to ``quantize_static``
through its calibration cache, so both start from the same numbers.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from export_fixtures import images
from onnx import TensorProto, helper, numpy_helper

from pvt_deploy.export import precision as prec
from pvt_deploy.export import qdq
from pvt_deploy.export.calibration import Batch, calibration_reader
from pvt_deploy.utils import onnx_model

pytest_plugins = ["export_fixtures"]


def _canonical(model: onnx.ModelProto) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Nodes by first output (order-free: both writers emit a valid but different order), arrays by name."""
    nodes = {n.output[0]: (n.op_type, n.name, list(n.input), list(n.output), n.domain,
                           sorted(a.SerializeToString() for a in n.attribute)) for n in model.graph.node}
    return nodes, {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _assert_same_graph(ours: onnx.ModelProto, ref: onnx.ModelProto, ignore: Collection[str] = ()) -> None:
    a_nodes, a_inits = _canonical(ours)
    b_nodes, b_inits = _canonical(ref)
    for name in ignore:  # initializers the test checks itself
        a_inits.pop(name), b_inits.pop(name)
    assert set(a_nodes) == set(b_nodes)
    assert [k for k in a_nodes if a_nodes[k] != b_nodes[k]] == []
    assert set(a_inits) == set(b_inits)
    differ = [k for k in a_inits if a_inits[k].dtype != b_inits[k].dtype or a_inits[k].shape != b_inits[k].shape
              or not np.array_equal(a_inits[k], b_inits[k])]
    assert differ == []


def _ort_quantize(path: Path, dst: Path, settings: dict[str, Any], ranges: dict[str, Any],
                  nodes: list[str] | None, scores: list[str]) -> onnx.ModelProto:
    """onnxruntime's quantize_static for ``settings`` on ``ranges`` (through its calibration cache)."""
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    cache = dst.with_suffix(".ranges.json")
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, {t: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                                             for t, (lo, hi) in ranges.items()}), cache)
    kwargs = dict(settings["kwargs"])
    if nodes is not None:
        kwargs["nodes_to_quantize"] = nodes
    kwargs["extra_options"] = {**kwargs["extra_options"], "TensorQuantOverrides": prec.score_window_overrides(scores)}
    quantize_static(str(path), str(dst), None, calibrate_method=CalibrationMethod.MinMax,
                    calibration_cache_path=str(cache), **kwargs)
    model = onnx.load(str(dst))
    prec.unquantize_other_inputs(model, nodes, keep=scores)
    return model


def _jobs(artifact: Any, tmp: Path, size: int) -> tuple[Path, list[prec.Int8Job], list[Batch]]:
    """Both INT8 jobs of an exported model, as the exporter plans them, and calibration batches."""
    src = artifact.folder / "model.onnx"
    prepared = tmp / "prepared.onnx"
    prec.prepare_for_quantization(src, prepared)
    jobs = [prec.plan_int8(prepared, tmp / f"{f}.onnx", flavour=f, source=src) for f in ("cpu", "trt")]
    x = images(3, size, size, seed=3)
    # the graph's own preprocessing is inside it (raw pixels in), so any image batch is a real input
    return src, jobs, [Batch(x[i:i + 1], [], [f"im{i}"]) for i in range(3)]


@pytest.fixture(scope="module")
def det_jobs(det_artifact, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[prec.Int8Job], list[Batch]]:
    """pvt_v2_b0 RetinaNet: static CPU flavour on its layout (attention, GELU, channels-last depthwise)."""
    return _jobs(det_artifact, tmp_path_factory.mktemp("qdq-det"), 160)


@pytest.fixture(scope="module")
def seg_jobs(seg_artifact, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[prec.Int8Job], list[Batch]]:
    """pvt_tiny (v1) Semantic FPN: static CPU flavour on its layout too (conv chains in the head)."""
    return _jobs(seg_artifact, tmp_path_factory.mktemp("qdq-seg"), 128)


@pytest.mark.parametrize("flavour", ["cpu", "trt"])
def test_writer_equals_onnxruntime_quantize_static(det_jobs, flavour: str, tmp_path: Path) -> None:
    src, jobs, batches = det_jobs
    job = next(j for j in jobs if j.flavour == flavour)
    ranges = prec.calibrate_jobs(src, [job], batches)
    # no images: every range the writer needs must come from the shared calibration
    ours, record = prec.write_int8(job, tmp_path / "ours.onnx", [], ranges)
    ref = _ort_quantize(job.graph, tmp_path / "ref.onnx", prec.int8_settings(flavour), ranges, job.nodes, job.scores)
    if flavour == "trt":
        _undo_float_bias_quirks(ref, job.graph)
    _assert_same_graph(ours, ref)
    quantized = {n.op_type for n in ours.graph.node if any(i.endswith("_DequantizeLinear_Output") for i in n.input)}
    assert {"Conv", "MatMul"} <= quantized and record["float_inputs_restored"] > 0
    # MatMuls with a stored weight only, as the record says ("weights only"): the TensorRT flavour quantized
    # attention's activation-by-activation MatMuls too (ONNX Runtime's QDQ quantizer ignores MatMulConstBOnly)
    assert record["matmul"].startswith("weights only")
    producer = {o: n for n in ours.graph.node for o in n.output}
    inits = {i.name for i in ours.graph.initializer}

    def weight(n: onnx.NodeProto) -> bool:
        b = producer.get(n.input[1])
        return n.input[1] in inits or (b is not None and b.op_type == "DequantizeLinear" and b.input[0] in inits)

    matmuls = [n for n in ours.graph.node if n.op_type == "MatMul"]
    read_dq = [n for n in matmuls if any(i.endswith("_DequantizeLinear_Output") for i in n.input)]
    assert read_dq and all(weight(n) for n in read_dq), [n.name for n in read_dq if not weight(n)]
    if flavour == "trt":  # the CPU flavour's attention is MultiHeadAttention
        assert any(not weight(n) for n in matmuls)  # attention's are in the graph, in float


@pytest.mark.parametrize("model", ["det_jobs", "seg_jobs"])
def test_one_calibration_serves_both_flavours(model: str, request: pytest.FixtureRequest) -> None:
    """The shared ranges, measured on the float export, are each flavour's own (its graph is a
    rewrite of that export) and those of onnxruntime's calibrator."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    src, jobs, batches = request.getfixturevalue(model)
    assert [j.record["method"] for j in jobs] == ["static", "static"] and "layout" in jobs[0].record
    shared = prec.calibrate_jobs(src, jobs, batches)
    assert set(shared) == {t for j in jobs for t in j.tensors()}
    for job in jobs:
        own = qdq.calibrate(onnx.load(str(job.graph)), job.tensors(), batches)
        for t, (lo, hi) in own.items():
            np.testing.assert_allclose(shared[t], (lo, hi), rtol=1e-5, atol=1e-6, err_msg=t)
    if model != "det_jobs":
        return
    trt = next(j for j in jobs if j.flavour == "trt")
    calibrator = create_calibrator(trt.graph, ["Conv", "MatMul", "Gemm"], calibrate_method=CalibrationMethod.MinMax,
                                   augmented_model_path=str(trt.graph.with_suffix(".augmented.onnx")))
    calibrator.collect_data(calibration_reader(batches))
    theirs = calibrator.compute_data()
    for t in trt.tensors():
        np.testing.assert_allclose(shared[t], np.ravel(theirs[t].range_value), rtol=1e-5, atol=1e-6, err_msg=t)


def _tiny_graph(path: Path) -> Path:
    """Conv -> Relu -> Conv sharing one bias, the second conv's output a graph output read again by a
    pooling + Gemm (transB, beta) head; and a conv with tiny weights and a large bias, whose weight
    scale has to grow so the int32 bias fits; one channel of a weight all zeros."""
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int, scale: float = 0.3) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    wa = init("wa", 8, 4, 3, 3)
    wa_arr = numpy_helper.to_array(wa).copy()
    wa_arr[2] = 0.0
    inits = [numpy_helper.from_array(wa_arr, "wa"), init("wb", 8, 8, 3, 3), init("b", 8),
             init("wc", 8, 4, 1, 1, scale=1e-7), numpy_helper.from_array(np.full(8, 3e4, np.float32), "bc"),
             init("wg", 5, 8), init("bg", 5), numpy_helper.from_array(np.array([1, -1], np.int64), "flat")]
    nodes = [
        helper.make_node("Conv", ["x", "wa", "b"], ["a"], "conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], "relu"),
        helper.make_node("Conv", ["r", "wb", "b"], ["y"], "conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "wc", "bc"], ["c"], "conv_c"),
        helper.make_node("GlobalAveragePool", ["y"], ["p"], "pool"),
        helper.make_node("Reshape", ["p", "flat"], ["f"], "flatten"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["logits"], "gemm", transB=1, beta=0.5),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y", "c", "logits")],
                              inits)
    onnx.save_model(onnx_model(graph), str(path))
    return path


@pytest.mark.parametrize("flavour", ["cpu", "trt"])
def test_writer_equals_onnxruntime_on_the_corner_cases(flavour: str, tmp_path: Path) -> None:
    path = _tiny_graph(tmp_path / "tiny.onnx")
    model = onnx.load(str(path))
    spec = qdq.QdqSpec.from_quantize_static(prec.int8_settings(flavour)["kwargs"])
    x = np.random.default_rng(1).uniform(-1, 2, (1, 4, 6, 6)).astype(np.float32)
    ranges = qdq.calibrate(model, qdq.to_quantize(model, spec), [Batch(x, [], ["x"])], input_name="x")
    ours = qdq.quantize(model, ranges, spec)
    prec.unquantize_other_inputs(ours, None)
    ref = _ort_quantize(path, tmp_path / "ref.onnx", prec.int8_settings(flavour), ranges, None, [])
    if flavour == "trt":
        _undo_float_bias_quirks(ref, path)
    # onnxruntime raises wc's scale for its big bias even when the bias stays float; the writer only
    # when the bias becomes int32 (checked below)
    _assert_same_graph(ours, ref, ignore=("wc_quantized", "wc_scale") if flavour == "trt" else ())
    inits = {i.name: numpy_helper.to_array(i) for i in ours.graph.initializer}
    assert inits["wa_scale"][2] == 1.0 and not inits["wa_quantized"][2].any()  # the all-zero channel
    if flavour == "cpu":
        assert {"b_quantized", "b0_quantized"} <= set(inits)  # the shared bias, copied per conv
        raised = inits["wc_scale"] > 1e-7 / 127 * 2  # raised for the 3e4 bias: it fits int32 now
        assert raised.all() and np.abs(inits["bc_quantized"]).max() < np.iinfo(np.int32).max
        # the conv output that is a graph output is quantized in place
        assert any(n.op_type == "DequantizeLinear" and n.output[0] == "y" for n in ours.graph.node)
    else:  # biases stay float: TensorRT's ONNX parser dequantizes int8, not int32
        assert not [v for v in inits.values() if v.dtype == np.int32]
        assert inits["b"].dtype == inits["bc"].dtype == inits["bg"].dtype == np.float32
        gemm = next(n for n in ours.graph.node if n.op_type == "Gemm")
        assert next(a.f for a in gemm.attribute if a.name == "beta") == 0.5  # not folded into a bias scale
        wc = numpy_helper.to_array(next(i for i in onnx.load(str(path)).graph.initializer if i.name == "wc"))
        np.testing.assert_array_equal(inits["wc_scale"], qdq.weight_scales(wc, 0))  # not raised: no int32 bias
    import onnxruntime as ort

    out = ort.InferenceSession(ours.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    ref_out = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b in zip(out, ref_out, strict=True):
        np.testing.assert_array_equal(a, b)


def _undo_float_bias_quirks(ref: onnx.ModelProto, source: Path) -> None:
    """What ``quantize_static`` does to float biases (``QuantizeBias: False``) that the writer does not
    (see pvt_deploy/export/qdq.py): it gives each node of a shared bias a copy of its own, and sets a
    Gemm's beta to 1 while leaving its bias unscaled, which changes the output. Undone here from the
    float graph ``source`` (each node's bias name and beta), so the rest is compared exactly."""
    original = {n.output[0]: n for n in onnx.load(str(source), load_external_data=False).graph.node
                if n.op_type in ("Conv", "Gemm")}
    arrays = {i.name: numpy_helper.to_array(i) for i in ref.graph.initializer}
    for node in ref.graph.node:
        was = original.get(node.output[0])
        if was is None or len(node.input) < 3 or node.input[2] == was.input[2]:
            continue
        assert np.array_equal(arrays[node.input[2]], arrays[was.input[2]]), node.name  # a copy, nothing else
        node.input[2] = was.input[2]
    for node in ref.graph.node:
        was = original.get(node.output[0])
        for a in node.attribute:
            if was is not None and node.op_type == "Gemm" and a.name == "beta":
                a.f = next((b.f for b in was.attribute if b.name == "beta"), 1.0)
    used = {i for n in ref.graph.node for i in n.input}
    kept = [i for i in ref.graph.initializer if i.name in used]
    del ref.graph.initializer[:]
    ref.graph.initializer.extend(kept)


def test_scales_match_onnxruntime() -> None:
    """Activation and weight scales against onnxruntime's own functions, edge cases included."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    for lo, hi in [(-3.2, 7.7), (0.5, 2.0), (-4.0, -1.0), (0.0, 0.0), (-1e-3, 1e-3)]:
        for unsigned, qtype in ((True, TensorProto.UINT8), (False, TensorProto.INT8)):
            qmin, qmax = get_qmin_qmax_for_qType(qtype, symmetric=not unsigned)
            zero, scale = compute_scale_zp(np.array(lo, np.float32), np.array(hi, np.float32), qmin, qmax,
                                           symmetric=not unsigned)
            ours = qdq.activation_params(np.float32(lo), np.float32(hi), unsigned)
            assert ours[0].dtype == zero.dtype and ours[0] == zero and ours[1] == scale and ours[1].dtype == np.float32
    w = np.random.default_rng(2).standard_normal((6, 3, 3, 3)).astype(np.float32)
    w[1] = 0.0
    w[4] = -np.abs(w[4])
    for axis, count in ((0, 6), (1, 3)):
        scales = qdq.weight_scales(w, axis)
        for i in range(count):
            chan = np.take(w, i, axis)
            _, expect = compute_scale_zp(np.array(chan.min()), np.array(chan.max()), *get_qmin_qmax_for_qType(
                TensorProto.INT8, symmetric=True), symmetric=True)
            assert scales[i] == expect


def test_a_scale_exactly_at_float32s_tiny_is_kept_as_onnxruntime_keeps_it() -> None:
    """ONNX Runtime replaces a scale *below* float32's smallest normal by 1.0; one exactly at it
    (a range of 127 * 2**-126, exact in float32) stays, for weights and activations alike."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    tiny = np.finfo(np.float32).tiny
    edge = np.float32(127) * tiny
    qmin, qmax = get_qmin_qmax_for_qType(TensorProto.INT8, symmetric=True)
    _, expect = compute_scale_zp(np.array(-edge), np.array(edge), qmin, qmax, symmetric=True)
    assert expect == tiny
    assert qdq.weight_scales(np.array([[edge, -edge / 2]], np.float32), 0)[0] == expect
    assert qdq.activation_params(np.float32(-edge), np.float32(edge), unsigned=False)[1] == expect
