"""Static INT8 quantization into a QDQ graph: calibration ranges and the Q/DQ writer.

The exporter's two static INT8 settings (:func:`pvt_deploy.export.precision.int8_settings`) are
written in ``onnxruntime.quantization.quantize_static`` terms, and this module writes the graph that
``quantize_static`` writes for them — the same nodes, names, scales, zero points and integers
(``tests/test_export_qdq.py`` compares the two given the same ranges, on a detector and on a graph of
corner cases) — in a fraction of the time. One deliberate difference: with float biases
(``QuantizeBias: False``, the TensorRT flavour) ``quantize_static`` (onnxruntime 1.32) still sets a Gemm's ``beta`` to
1 without scaling the bias, which changes the Gemm's output, and copies a bias two nodes share; this
writer leaves both as they were. For ``pvt_small`` at 640 the ONNX Runtime quantizer took
24–27 s per flavour on 2 cores (9–11 s of it writing, given the ranges; 0.8 s here): per-channel
Python loops over ~47k weight channels, node-input rewiring that rescans the graph for every tensor,
and a calibrator that runs the graph with every optimisation off, once per flavour. Here weights are
quantized channel-vectorised, the graph is rewired in one pass, and calibration runs the graph as
ONNX Runtime optimises it, with a ReduceMin/ReduceMax pair on each tensor to quantize (ranges only,
so memory stays that of one inference).

What is written, for each quantized ``Conv``/``MatMul``/``Gemm`` (``nodes``, or all of them):

* its float activation inputs (and its output, unless its op type is excluded): one
  ``QuantizeLinear -> DequantizeLinear`` pair per tensor — or per quantized consumer with
  ``DedicatedQDQPair`` — with the calibrated MinMax range (or an override) as scale/zero point;
* its stored weight: 8-bit, symmetric, per output channel (``Conv`` axis 0, ``MatMul`` axis 1 or as
  configured, ``Gemm`` by ``transB``), behind a ``DequantizeLinear``;
* its stored bias (``Conv``/``Gemm``): int32 with scale ``input_scale * weight_scale`` (times Gemm's
  ``beta``, which becomes 1; a weight scale is raised first where that product would overflow int32),
  a shared bias copied per node.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pvt_deploy.errors import PvtDeployError
from pvt_deploy.utils import joined_lines

if TYPE_CHECKING:
    import onnx

    from pvt_deploy.export.calibration import Batch

QUANT_OPS = ("Conv", "MatMul", "Gemm")
Range = tuple[Any, Any]  # (min, max) of one tensor

_INT32 = np.iinfo(np.int32)
_INT32_QRANGE = np.float64(_INT32.max) - np.float64(_INT32.min + 1)
_BIAS_EPSILON = np.float32(1.0001)  # headroom when a weight scale is raised for its bias


@dataclass(frozen=True)
class QdqSpec:
    """One static setting: activation type and symmetry, which outputs are quantized, pairs per
    consumer or per tensor, the MatMul weights' channel axis, whether biases become int32. Weights are
    8-bit symmetric per channel."""

    unsigned: bool  # activations uint8 asymmetric (else int8 symmetric)
    excluded_outputs: frozenset[str]
    dedicated_pairs: bool
    matmul_axis: int = 1
    quantize_bias: bool = True  # False: biases stay float (TensorRT's parser takes no int32 DequantizeLinear)

    @classmethod
    def from_quantize_static(cls, kwargs: Mapping[str, Any]) -> QdqSpec:
        """The setting given as ``quantize_static`` keyword arguments (QDQ, per-channel INT8 weights)."""
        from onnxruntime.quantization import QuantFormat, QuantType

        extra = dict(kwargs.get("extra_options") or {})
        if (kwargs.get("quant_format") != QuantFormat.QDQ or kwargs.get("weight_type") != QuantType.QInt8
                or not kwargs.get("per_channel") or kwargs.get("reduce_range")):
            raise ValueError("the QDQ writer covers QDQ graphs with per-channel 8-bit weights, full range")
        unsigned = kwargs.get("activation_type") == QuantType.QUInt8
        if unsigned == bool(extra.get("ActivationSymmetric", False)):
            raise ValueError("activations are uint8 asymmetric or int8 symmetric here")
        return cls(unsigned=unsigned, excluded_outputs=frozenset(extra.get("OpTypesToExcludeOutputQuantization", ())),
                   dedicated_pairs=bool(extra.get("DedicatedQDQPair", False)),
                   matmul_axis=int(extra.get("QDQOpTypePerChannelSupportToAxis", {}).get("MatMul", 1)),
                   quantize_bias=bool(extra.get("QuantizeBias", True)))


# --------------------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------------------


def activation_params(rmin: np.float32, rmax: np.float32, unsigned: bool) -> tuple[np.ndarray, np.ndarray]:
    """(zero point, scale) of one activation range, as ONNX Runtime's ``compute_scale_zp`` computes them:
    the range widened to include 0, uint8 over [0, 255] or int8 symmetric over [-127, 127]."""
    rmin = np.minimum(np.float32(rmin), np.float32(0))
    rmax = np.maximum(np.float32(rmax), np.float32(0))
    qmin, qmax = (0, 255) if unsigned else (-127, 127)
    if not unsigned:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin, rmax = -absmax, absmax
    scale = (np.float64(rmax) - np.float64(rmin)) / np.float64(qmax - qmin)
    dtype = np.uint8 if unsigned else np.int8
    if scale < np.finfo(np.float32).tiny:
        return np.array(0, dtype), np.array(1.0, np.float32)
    zero = np.round(qmin - np.float64(rmin) / scale) if unsigned else 0
    return np.array(zero, dtype), np.array(scale, np.float32)


def weight_scales(w: np.ndarray, axis: int | None) -> np.ndarray:
    """Symmetric 8-bit scales of ``w``: one per slice along ``axis`` (a 0-d array when ``None``)."""
    moved = w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    absmax = np.maximum(np.abs(np.minimum(moved.min(axis=1), 0)), np.abs(np.maximum(moved.max(axis=1), 0)))
    scale = (absmax.astype(np.float64) * 2) / 254.0
    scale = np.where(scale < np.finfo(np.float32).tiny, 1.0, scale).astype(np.float32)
    return scale.reshape(()) if axis is None else scale


def _along(values: np.ndarray, axis: int | None, rank: int) -> np.ndarray:
    if axis is None:
        return values
    shape = [1] * rank
    shape[axis] = -1
    return values.reshape(shape)


def quantize_weight(w: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """``w`` in int8 steps of ``scale`` (per slice along ``axis``), rounded half to even."""
    q: np.ndarray = np.clip(np.round(w.astype(np.float32) / _along(scale, axis, w.ndim)), -128, 127)
    return q.astype(np.int8)


def _raise_for_bias(weight_scale: np.ndarray, input_scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The weight scale, raised where ``input_scale * weight_scale`` would quantize ``bias`` past int32."""
    if weight_scale.ndim:
        need = (_BIAS_EPSILON * (np.float32(2.0) * np.abs(bias.astype(np.float32)))).astype(np.float64) / _INT32_QRANGE
        have = np.float64(input_scale) * weight_scale.astype(np.float64)
    else:
        absmax = max(abs(min(float(bias.min()), 0.0)), abs(max(float(bias.max()), 0.0)))
        need = np.float64(float(_BIAS_EPSILON) * 2.0 * absmax) / _INT32_QRANGE
        have = np.float64(input_scale) * np.float64(weight_scale)
    low = (have < need) & (have > 0)
    if not np.any(low):
        return weight_scale
    raised = np.where(low, weight_scale.astype(np.float64) * (need / np.where(low, have, 1.0)), weight_scale)
    return raised.astype(weight_scale.dtype)


# --------------------------------------------------------------------------------------------------
# The plan: which tensors get which parameters
# --------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    activations: dict[str, None]  # in marking order
    weights: dict[str, int | None]  # weight -> channel axis (None: per tensor)
    biases: list[tuple[str, str, str, str, float]]  # (bias as the node reads it, node, input, weight, beta)
    receivers: dict[str, list[int]]  # tensor -> indices of the quantized nodes reading it, in graph order


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors ONNX shape inference types as float (what ONNX Runtime's quantizer will quantize), the
    large initializers aside (:func:`pvt_deploy.export.graph.value_types`: they are weights)."""
    import onnx

    from pvt_deploy.export.graph import value_types

    types, promoted = value_types(model)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    return {name for name, t in types.items() if t in floats} - promoted


def _plan(model: onnx.ModelProto, spec: QdqSpec, nodes: Collection[str] | None) -> _Plan:
    import onnx

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    floats = _float_tensors(model)
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    plan = _Plan({}, {}, [], {})

    def quantizable(t: str) -> bool:
        return inits[t].data_type in float_types if t in inits else t in floats

    def activation(t: str) -> None:
        if t and quantizable(t):
            plan.activations.setdefault(t, None)

    def weight(t: str, axis: int) -> None:
        if t not in inits:
            activation(t)  # a computed weight is quantized like an activation
            return
        if inits[t].data_type not in float_types:
            return
        rank = len(inits[t].dims)
        plan.weights[t] = (axis + rank if axis < 0 else axis) if -rank <= axis < rank else None

    def bias(node: onnx.NodeProto, index: int, beta: float) -> None:
        name = node.input[index]
        if name not in inits or inits[name].data_type not in float_types:
            return
        if any(b[0] == name for b in plan.biases):  # read by another node too: this node gets a copy
            suffix = max((int(n[len(name):]) for n in inits if n.startswith(name) and n[len(name):].isdigit()),
                         default=-1) + 1
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[name])
            copy.name = f"{name}{suffix}"
            g.initializer.append(copy)
            inits[copy.name] = copy
            node.input[index] = name = copy.name
        plan.biases.append((name, node.name, node.input[0], node.input[1], beta))
        for a in node.attribute:  # Gemm: beta is in the bias scale now
            if a.name == "beta":
                a.f = 1.0

    for index, node in enumerate(g.node):
        if node.op_type not in QUANT_OPS or (nodes and node.name not in nodes):
            continue
        quantize_output = node.op_type not in spec.excluded_outputs
        if node.op_type == "MatMul":
            for t in (*node.input, *(node.output if quantize_output else ())):
                weight(t, spec.matmul_axis)  # stored: per channel; computed: as an activation
        else:
            activation(node.input[0])
            if quantize_output:
                activation(node.output[0])
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            weight(node.input[1], 0 if node.op_type == "Conv" or trans_b else 1)
            if spec.quantize_bias and len(node.input) > 2 and node.input[2]:
                beta = next((a.f for a in node.attribute if a.name == "beta"), 1.0) if node.op_type == "Gemm" else 1.0
                bias(node, 2, beta)
        for t in node.input:
            plan.receivers.setdefault(t, []).append(index)
    return plan


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------


def calibrate(model: onnx.ModelProto, tensors: Sequence[str], batches: Sequence[Batch],
              input_name: str = "images") -> dict[str, Range]:
    """MinMax ranges of ``tensors`` over ``batches``: one ONNX Runtime CPU session (optimised as at
    inference) of ``model`` with a ReduceMin/ReduceMax pair on each tensor as extra outputs."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    if not batches:
        raise PvtDeployError("static INT8 needs calibration images")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = []
    for i, t in enumerate(tensors):
        for op in ("ReduceMin", "ReduceMax"):
            out = f"{t}__pvt_{op}"
            probe.graph.node.append(helper.make_node(op, [t], [out], name=f"pvt_calib_{op}_{i}", keepdims=0))
            probe.graph.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, []))
            outputs.append(out)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
        del probe
        lo = hi = None
        for b in batches:
            values = np.asarray(session.run(outputs, {input_name: b.images}), np.float32).reshape(-1, 2)
            lo = values[:, 0] if lo is None else np.minimum(lo, values[:, 0])
            hi = values[:, 1] if hi is None else np.maximum(hi, values[:, 1])
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own exception types
        raise PvtDeployError(f"INT8 calibration failed: {joined_lines(e)[:300]}") from e
    assert lo is not None and hi is not None
    return {t: (lo[i], hi[i]) for i, t in enumerate(tensors)}


# --------------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------------


def to_quantize(model: onnx.ModelProto, spec: QdqSpec, nodes: Collection[str] | None = None) -> list[str]:
    """The activation tensors :func:`quantize` needs ranges for."""
    probe = type(model)()
    probe.CopyFrom(model)
    return list(_plan(probe, spec, nodes).activations)


def quantize(model: onnx.ModelProto, ranges: Mapping[str, Range], spec: QdqSpec, *,
             nodes: Collection[str] | None = None, overrides: Mapping[str, Range] | None = None,
             calibrate_missing: Callable[[onnx.ModelProto, list[str]], Mapping[str, Range]] | None = None,
             ) -> onnx.ModelProto:
    """Rewrite ``model`` in place into the QDQ graph of ``spec`` (see the module doc) and return it.
    ``ranges``: calibrated (min, max) per activation (:func:`to_quantize`); ``overrides`` replace some;
    ``calibrate_missing(model, tensors)`` measures the ones ``ranges`` lacks (else they are an error)."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    plan = _plan(model, spec, nodes)
    overrides = overrides or {}
    missing = [t for t in plan.activations if t not in ranges and t not in overrides]
    if missing and calibrate_missing is not None:
        ranges = {**ranges, **calibrate_missing(model, missing)}
    inits = {i.name: i for i in g.initializer}
    new_inits: list[onnx.TensorProto] = []
    head: list[onnx.NodeProto] = []  # DQ nodes of stored tensors, first in the graph
    after: dict[str, list[onnx.NodeProto]] = {}  # producer output -> Q/DQ nodes placed after it
    rename: dict[tuple[int, str], str] = {}  # (node index, input) -> new input, for some consumers only
    rename_all: dict[str, str] = {}
    act_type = onnx.TensorProto.UINT8 if spec.unsigned else onnx.TensorProto.INT8

    # activations: scale and zero point
    act_scale: dict[str, np.ndarray] = {}
    for t in plan.activations:
        if t not in ranges and t not in overrides:
            raise PvtDeployError(f"INT8: no calibration range for {t}")
        zero, scale = activation_params(*(overrides.get(t) or ranges[t]), unsigned=spec.unsigned)
        act_scale[t] = scale
        new_inits += [helper.make_tensor(f"{t}_zero_point", act_type, [], [int(zero)]),
                      helper.make_tensor(f"{t}_scale", onnx.TensorProto.FLOAT, [], [float(scale)])]

    # weights: scales, raised where a bias needs it, then the integers
    w_data = {w: numpy_helper.to_array(inits[w]) for w in plan.weights}
    w_scale = {w: weight_scales(data, plan.weights[w]) for w, data in w_data.items()}
    for b, _, x, w, _ in plan.biases:
        if x in act_scale and w in w_scale:
            w_scale[w] = _raise_for_bias(w_scale[w], act_scale[x], numpy_helper.to_array(inits[b]))
    for w, axis in plan.weights.items():
        scale = w_scale[w]
        new_inits += [numpy_helper.from_array(quantize_weight(w_data[w], scale, axis), f"{w}_quantized"),
                      helper.make_tensor(f"{w}_zero_point", onnx.TensorProto.INT8, scale.shape,
                                         [0] * scale.size),
                      helper.make_tensor(f"{w}_scale", onnx.TensorProto.FLOAT, scale.shape, scale.ravel().tolist())]
        head.append(helper.make_node("DequantizeLinear", [f"{w}_quantized", f"{w}_scale", f"{w}_zero_point"],
                                     [f"{w}_DequantizeLinear_Output"], f"{w}_DequantizeLinear", axis=axis))
        rename_all[w] = f"{w}_DequantizeLinear_Output"

    # biases: int32 at input_scale * weight_scale, dequantized under their own name
    dropped: set[str] = set()
    for b, _, x, w, beta in plan.biases:
        if x not in act_scale or w not in w_scale:
            raise PvtDeployError(f"INT8: the bias {b} has no quantized input or weight")
        data = numpy_helper.to_array(inits[b])
        scale = act_scale[x] * w_scale[w] * beta
        q = np.clip(np.round(data.astype(np.float64) / scale.astype(np.float64)), _INT32.min, _INT32.max)
        stored = np.asarray(scale, data.dtype).reshape(-1)
        new_inits += [numpy_helper.from_array(q.astype(np.int32).reshape(data.shape), f"{b}_quantized"),
                      numpy_helper.from_array(stored, f"{b}_quantized_scale"),
                      numpy_helper.from_array(np.zeros(stored.shape, np.int32), f"{b}_quantized_zero_point")
                      if stored.size > 1 else helper.make_tensor(f"{b}_quantized_zero_point",
                                                                 onnx.TensorProto.INT32, [], [0])]
        head.append(helper.make_node("DequantizeLinear", [f"{b}_quantized", f"{b}_quantized_scale",
                                                          f"{b}_quantized_zero_point"], [b], f"{b}_DequantizeLinear",
                                     axis=0 if stored.size > 1 else None))
        dropped.add(b)

    # activation Q/DQ pairs, placed right after the tensor's producer
    graph_outputs = {o.name for o in g.output}
    producer_of = {o: n for n in g.node for o in n.output}
    for t in plan.activations:
        params = [f"{t}_scale", f"{t}_zero_point"]
        receivers = plan.receivers.get(t, [])
        if spec.dedicated_pairs and len(receivers) > 1:
            for i, index in enumerate(receivers, 1):
                qo, dqo = f"{t}_QuantizeLinear_Output_{i}", f"{t}_DequantizeLinear_Output_{i}"
                after.setdefault(t, []).extend([
                    helper.make_node("QuantizeLinear", [t, *params], [qo], f"{t}_QuantizeLinear_{i}"),
                    helper.make_node("DequantizeLinear", [qo, *params], [dqo], f"{t}_DequantizeLinear_{i}")])
                rename[(index, t)] = dqo
            continue
        q_in, dq_out = t, f"{t}_DequantizeLinear_Output"
        if t in graph_outputs:  # the producer writes a new name; the DQ writes the output
            q_in, dq_out = f"{t}_QuantizeLinear_Input", t
            producer = producer_of[t]
            producer.output[list(producer.output).index(t)] = q_in
        else:
            rename_all[t] = dq_out
        qo = f"{t}_QuantizeLinear_Output"
        after.setdefault(q_in, []).extend([
            helper.make_node("QuantizeLinear", [q_in, *params], [qo], f"{t}_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [qo, *params], [dq_out], f"{t}_DequantizeLinear")])

    # one pass: rewire the original nodes, place the new ones
    original = list(g.node)
    for index, node in enumerate(original):
        for i, name in enumerate(node.input):
            new = rename.get((index, name)) or rename_all.get(name)
            if new is not None:
                node.input[i] = new
    produced = {o for n in original for o in n.output}
    ordered: list[onnx.NodeProto] = list(head)
    for t in [t for t in after if t not in produced]:  # graph inputs
        ordered += after.pop(t)
    for node in original:
        ordered.append(node)
        for o in node.output:
            ordered += after.pop(o, [])
    del g.node[:]
    g.node.extend(ordered)

    # initializers: the new ones in, the float ones nobody reads out
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used and i.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(keep)
    return model
