"""FP16 and INT8 variants of an exported graph (precision lives in the ONNX, see DESIGN §4).

FP16 (``model.fp16.onnx``): weights and activations in float16 except where float16 loses: every
``LayerNormalization`` and ``Softmax`` (variance and exp overflow after attention), ``ReduceMean``
(token averaging of the v2 classifier sums thousands of values), ONNX Runtime's default block list
(TopK, Range, Min/Max, NMS...), and the whole *tail* of the graph — every node after the last
Conv/MatMul/Gemm, i.e. RetinaNet's sigmoid/top-k/box decoding (``exp`` of deltas, pixel coordinates
above 2048 where float16 steps by 2) and segmentation's resize/argmax — and the *head*, every node
before the first Conv/MatMul/Gemm, i.e. the input normalisation (:func:`head_nodes`). Inputs and
outputs stay float32 so every runtime feeds and reads the graph the same way.

INT8: Q/DQ graphs calibrated on images preprocessed exactly as at inference
(:mod:`pvt_deploy.export.calibration`; one MinMax pass over the float export serves every static
flavour) and written by :mod:`pvt_deploy.export.qdq` (what ONNX Runtime's ``quantize_static``
writes for :func:`int8_settings`, ~10x faster), quantizing the inputs of Conv, Gemm and weight MatMuls only
(``MatMulConstBOnly``): LayerNorm, Softmax, Resize and the activation-by-activation MatMuls of
attention and of the size-generic adaptive pooling stay float. (A pooling matrix holds 1/bin-size,
which changes with the input size, so a scale calibrated at one size would clip it at another.)

* TensorRT flavour (``model.int8.trt.onnx``): symmetric INT8 activations (S8, zero point 0) and
  per-channel symmetric INT8 weights, Q/DQ on operator inputs only — what TensorRT's explicit
  quantization fuses into INT8 kernels.
* CPU flavour (``model.int8.onnx``): what ONNX Runtime's CPU kernels run fastest while detections
  still agree. ``method="static"``: U8 activations (MinMax), per-channel S8 weights at full 8 bits,
  on the nodes :func:`cpu_int8_plan` picks — every weight MatMul/Gemm (float output, so ONNX Runtime
  runs ``MatMulIntegerToFloat`` and the residual stream is never rounded) and the Conv chains of the
  FPN and RetinaNet head (INT8 outputs, so Conv+ReLU chains run as ``QLinearConv``); convs that read
  the image or tokens and write into LayerNorm/Add stay FP32, and RetinaNet's score logits are
  quantized over a fixed score window instead of their calibrated range. ``method="dynamic"``:
  weights-only INT8 on MatMul/Gemm, activations quantized per call, on a graph whose patch and
  spatial-reduction convs were first rewritten as MatMuls (so they are quantized too); v2's
  depthwise convs and its overlapping patch convs of stages 2-4 get calibrated static INT8, which
  ONNX Runtime runs as channels-last ``QLinearConv`` (``benchmarks/int8_variants.py --flavours
  export,dynamic-plain``: pvt_small classifier batch 1 30.2 -> 26.6 ms, batch 8 248.1 -> 226.8 ms;
  ``--model pvt_v2_b0-cls --batch 8 --flavours export,float-depthwise``: 71.9 -> 63.5 ms; the patch
  convs with the plain attention below: 8.8-10.3 % less CPU per batch-8 shard, docs/PERFORMANCE.md).
  Both methods quantize the float export after :func:`pvt_deploy.export.optimize.int8_cpu_layout`
  (attention as ``MultiHeadAttention``, for the dynamic method written back as plain operators; GELU
  as one node, depthwise convs channels-last; ``--flavours export,no-layout``: pvt_v2_b0 RetinaNet
  296.5 -> 264.7 ms), so the export's parity gate measures the graph that runs.
  ``method="auto"`` (the default):
  static where the graph has Conv chains (detectors, segmenters), dynamic otherwise (classifiers:
  same speed as static here, better top-5 agreement).

  Measured with ``benchmarks/int8_variants.py --model pvt_small`` (2-core AMD EPYC, AVX-512 VNNI,
  ORT 1.32, synthetic seeded weights, agreement with PyTorch FP32 on 12 real pictures): pvt_small
  RetinaNet 640² 2.78x PyTorch eager at detection F1 0.992, where the plain static QDQ of every
  Conv/MatMul was 2.58x at F1 0.901, dynamic INT8 1.55x at F1 0.989 and the previous head-only 7-bit
  recipe 1.64x at F1 0.957. Ablations in the same run: calibrated min/max on the score logits
  instead of the window F1 0.914; 7-bit ``reduce_range`` weights F1 0.856 (cosine 0.981); quantizing
  the patch/SR/lateral convs too 2.57x at F1 0.972 (on pvt_v2_b0: F1 0.949 instead of 0.966); INT8
  MatMul outputs (``QLinearMatMul``) the same speed and F1. 8-bit weights are written for CPUs
  with VNNI (x86 since Cascade Lake / Zen 4, ARM dot-product). On older x86 CPUs ONNX Runtime's
  U8S8 products saturate 16-bit sums (pvt_v2_b0 RetinaNet F1 0.672 on an AVX2 EPYC), so sessions
  there re-base the weights to uint8 at load, which is exact
  (:func:`pvt_deploy.export.optimize.unsigned_int8`), and so does the parity gate
  (:func:`pvt_deploy.export.onnx.ort_runner`). There 8-bit products run at 1-2x the FP32 rate
  (Zen 1 to Zen 3), so sessions also run the wide 3x3 head convs as float Winograd on the dequantized
  values (:func:`pvt_deploy.export.optimize.winograd_int8_convs`; pvt_v2_b0 RetinaNet 640² on the
  Zen 1 EPYC 2075 -> 1151 ms per image); INT8 is then about as fast as FP32 where the CPU's 8-bit
  GEMMs are no faster than its float ones, and the backend says so
  (:func:`pvt_deploy.utils.cpu.int8_gemm_gain`). Each export records the latency it measured on its parity images
  next to the variant in the manifest.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pvt_deploy.errors import InputError, PvtDeployError
from pvt_deploy.export.graph import drop_dead_nodes, toposort
from pvt_deploy.utils import joined_lines

if TYPE_CHECKING:
    import onnx

    from pvt_deploy.export.calibration import Batch

log = logging.getLogger(__name__)

HEAVY_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Kept in float32 in the FP16 graph (on top of onnxruntime's DEFAULT_OP_BLOCK_LIST).
FP16_KEEP_FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Sigmoid", "Exp", "TopK", "ReduceMax",
                      "GatherElements", "ArgMax", "NonMaxSuppression")
INT8_OPS = ("Conv", "MatMul", "Gemm")
INT8_FLAVOURS = ("cpu", "trt")
INT8_FILES = {"cpu": "model.int8.onnx", "trt": "model.int8.trt.onnx"}
CPU_METHODS = ("auto", "static", "dynamic")
# RetinaNet's classification output conv: its logits become scores through a sigmoid. Found by node
# name (TorchScript exports: ``/model/bbox_head/retina_cls/Conv``) or weight name (dynamo exports name
# nodes ``node_Conv_123`` but keep ``model.bbox_head.retina_cls.weight``).
SCORE_CONV_MARKER = "retina_cls"
# INT8 range of the score logits: scores 1e-4 .. 0.9999 (steps of 0.07 logit). The calibrated min/max
# spans about -80 .. +2, almost all of it far below any score threshold, and rounding it to 256
# levels moved detections across the threshold; a window tight around the scores that matter keeps
# them (pvt_small 640 detection F1 0.914 -> 0.992, benchmarks/int8_variants.py).
SCORE_LOGIT_WINDOW = (-9.21, 9.21)
# Q/DQ on the inputs of the quantized ops only, one pair per consumer: a tensor that also feeds a
# Resize (FPN top-down path), an Add or a LayerNorm reaches them unquantized.
INPUT_ONLY_QDQ = {"MatMulConstBOnly": True, "DedicatedQDQPair": True,
                  "OpTypesToExcludeOutputQuantization": list(INT8_OPS)}


# --------------------------------------------------------------------------------------------------
# FP16
# --------------------------------------------------------------------------------------------------


def _name_nodes(model: onnx.ModelProto) -> None:
    """The converter blocks nodes by name; give unnamed nodes one."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


def tail_nodes(model: onnx.ModelProto, heavy: Sequence[str] = HEAVY_OPS) -> list[str]:
    """Names of nodes that feed no Conv/MatMul/Gemm (directly or not): the post-head tail.

    Computed backwards from the heavy nodes over producer links; what is not reached is the tail.
    """
    producer: dict[str, int] = {}
    for i, n in enumerate(model.graph.node):
        for out in n.output:
            producer[out] = i
    feeds_heavy = [False] * len(model.graph.node)
    stack = [i for i, n in enumerate(model.graph.node) if n.op_type in heavy]
    while stack:
        i = stack.pop()
        if feeds_heavy[i]:
            continue
        feeds_heavy[i] = True
        stack.extend(producer[x] for x in model.graph.node[i].input if x in producer)
    return [n.name for i, n in enumerate(model.graph.node) if not feeds_heavy[i]]


def _merge_duplicate_casts(model: onnx.ModelProto) -> int:
    """Drop the copies of a Cast that another Cast already computes (same input, type and output
    name), and their repeated value_info; return how many were dropped.

    onnxruntime's float16 converter up to 1.30 inserts one ``<tensor>_cast_to_fp32`` Cast per float32
    consumer of an FP16 tensor, all writing the same name, so a tensor read by two kept-float32 nodes
    (a detector head's conv output, read by the score and box tails) breaks the graph's single
    assignment and fails ``onnx.checker``; 1.31 shares one Cast. Identical copies are safe to drop.
    """
    seen: dict[str, tuple[str, int]] = {}
    keep = []
    dropped = 0
    for node in model.graph.node:
        if node.op_type == "Cast" and len(node.output) == 1 and len(node.input) == 1:
            to = next((a.i for a in node.attribute if a.name == "to"), -1)
            key = (node.input[0], to)
            if seen.get(node.output[0]) == key:
                dropped += 1
                continue
            seen.setdefault(node.output[0], key)
        keep.append(node)
    if dropped:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        infos, names = [], set()
        for vi in model.graph.value_info:
            if vi.name not in names:
                names.add(vi.name)
                infos.append(vi)
        del model.graph.value_info[:]
        model.graph.value_info.extend(infos)
    return dropped


def head_nodes(model: onnx.ModelProto, heavy: Sequence[str] = HEAVY_OPS) -> list[str]:
    """Names of the nodes that compute from the graph's inputs and constants alone, before any
    Conv/MatMul/Gemm: the input normalisation (``(x - mean) / std`` on 0..255 pixels) and shape
    arithmetic.

    In float16 a pixel near 124 steps by 1/16, so the normalised value of a pixel equal to the mean
    is rounding noise instead of 0; a token that is exactly constant in float32 (a uniform area of
    that colour) then stops being constant, and the LayerNorm after the patch embedding scales that
    noise up to O(1). Kept in float32, the first float16 tensor is the normalised image.
    """
    computed = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    names = []
    for n in model.graph.node:  # topological order: a producer comes before its consumers
        if n.op_type in heavy or not all(x in computed for x in n.input if x):
            continue
        computed.update(n.output)
        names.append(n.name)
    return names


def _skip_round_trips(model: onnx.ModelProto) -> int:
    """Turn each ``Cast(to float32)`` of a ``Cast(to float16)`` of a float32 tensor into an
    ``Identity`` of that tensor (the float16 Cast goes if nothing else reads it); return how many.

    The converter casts every tensor that passes between two kept-float32 nodes to float16 and
    back, which rounds it to float16 anyway: the graph input on its way to the normalisation, each
    intermediate of the tail. Reading the float32 tensor directly is what keeping them was for.
    """
    import onnx

    float32 = {v.name for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]
               if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    float32 |= {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}

    def cast_to(node: onnx.NodeProto) -> int:
        return next((a.i for a in node.attribute if a.name == "to"), -1)

    to_half = {n.output[0]: n.input[0] for n in model.graph.node
               if n.op_type == "Cast" and cast_to(n) == onnx.TensorProto.FLOAT16 and n.input[0] in float32}
    skipped = 0
    for n in model.graph.node:
        if n.op_type == "Cast" and cast_to(n) == onnx.TensorProto.FLOAT and n.input[0] in to_half:
            source = to_half[n.input[0]]
            n.op_type = "Identity"
            del n.input[:]
            n.input.append(source)
            del n.attribute[:]
            skipped += 1
    if skipped:
        drop_dead_nodes(model)
    return skipped


def convert_fp16(model: onnx.ModelProto, *, keep_io_types: bool = True,
                 keep_fp32_ops: Sequence[str] = FP16_KEEP_FP32_OPS, keep_tail: bool = True
                 ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Float16 copy of ``model`` (see the module docstring for what stays float32).

    Returns the model and the manifest record of what was kept in float32.
    """
    import onnx
    from onnxruntime.transformers import float16

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never touch the caller's graph
    _name_nodes(model)
    head = head_nodes(model)
    tail = tail_nodes(model) if keep_tail else []
    ops = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    chatty = logging.getLogger(float16.__name__)  # logs every shared initializer at INFO
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=ops,
                                                     node_block_list=head + tail)
    finally:
        chatty.setLevel(level)
    merged = _merge_duplicate_casts(converted)
    if merged:
        log.debug("fp16: merged %d duplicate Cast nodes (onnxruntime <= 1.30's converter)", merged)
    skipped = _skip_round_trips(converted)
    toposort(converted)
    present = {n.op_type for n in model.graph.node}
    record = {"keep_io_types": bool(keep_io_types), "fp32_ops": [op for op in ops if op in present],
              "fp32_head_nodes": len(head), "fp32_tail_nodes": len(tail), "fp16_round_trips_skipped": skipped}
    return converted, record


# --------------------------------------------------------------------------------------------------
# INT8
# --------------------------------------------------------------------------------------------------


def prepare_for_quantization(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """onnxruntime's ``quant_pre_process``: shape inference + safe graph cleanup, so the quantizer
    sees every tensor's type and shape (required for per-channel axes and for skipping int ops)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_optimization=False, skip_onnx_shape=False,
                          skip_symbolic_shape=False, auto_merge=True)
    except Exception as e:  # noqa: BLE001 - symbolic inference can fail on exotic graphs; plain one works
        log.debug("symbolic shape inference failed (%s); retrying without it", e)
        quant_pre_process(str(src), str(dst), skip_optimization=False, skip_symbolic_shape=True)
    _restore_boundary(src, dst)


def _restore_boundary(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Give the pre-processed graph ``dst`` the boundary of ``src`` again: its inputs' and outputs' types and
    named dims, and the opset imports its nodes use. ONNX Runtime saves its optimizer's output, which
    imports every domain ONNX Runtime knows (com.microsoft, ai.onnx.training, org.pytorch.aten, ...),
    and its symbolic shape inference names the outputs' dims after inner nodes
    (``TopK_745_o0__d0 + TopK_756_o0__d0 + ...`` for ``num_boxes``); the INT8 files are written from
    this graph, so Netron and ``polygraphy inspect model`` showed both in ``model.int8.trt.onnx``."""
    import onnx

    face = onnx.load(str(src), load_external_data=False).graph
    types = {v.name: v.type for v in (*face.input, *face.output)}
    model = onnx.load(str(dst))
    for v in (*model.graph.input, *model.graph.output):
        if v.name in types:
            v.type.CopyFrom(types[v.name])
    used = {n.domain for n in _all_nodes(model)} | {o.domain for f in model.functions for o in f.opset_import}
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.save_model(model, str(dst))


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``model``: its graph's, its subgraphs' (If/Loop/Scan bodies) and its functions'."""
    import onnx

    stack = [model.graph.node, *(f.node for f in model.functions)]
    while stack:
        for node in stack.pop():
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append(attr.g.node)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(g.node for g in attr.graphs)


def int8_settings(flavour: str, method: str = "static") -> dict[str, Any]:
    """What each flavour is, for ``quantize_static``/``quantize_dynamic`` and for the manifest."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType

    if flavour == "trt":
        return {
            "record": {"flavour": "trt", "method": "static", "format": "QDQ", "activations": "int8 symmetric",
                       "weights": "int8 symmetric per-channel", "biases": "float", "ops": list(INT8_OPS),
                       "matmul": "weights only", "outputs_quantized": False},
            "kwargs": {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8,
                       "weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": False,
                       "op_types_to_quantize": list(INT8_OPS),
                       # biases stay float: TensorRT's ONNX parser dequantizes int8 (fp8, int4) only, not
                       # int32, and fuses the float bias into its INT8 conv/GEMM itself
                       "extra_options": {**INPUT_ONLY_QDQ, "ActivationSymmetric": True, "WeightSymmetric": True,
                                         "QuantizeBias": False, "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}}},
        }
    if flavour != "cpu":
        raise InputError(f"unknown INT8 flavour {flavour!r}; choose cpu, trt or both")
    if method == "dynamic":
        return {
            "record": {"flavour": "cpu", "method": "dynamic", "format": "QOperator (dynamic)",
                       "activations": "uint8 per batch at run time", "weights": "int8 per-tensor",
                       "ops": ["MatMul", "Gemm"], "matmul": "weights only"},
            # DefaultTensorType: an unsimplified graph (--no-simplify) has no value_info, and ONNX's shape
            # inference stops at the layout's com.microsoft nodes, so the quantizer found no type for the
            # MatMuls after them ("Unable to find data type for weight_name=..."); every such tensor is float
            "kwargs": {"weight_type": QuantType.QInt8, "op_types_to_quantize": ["MatMul", "Gemm"],
                       "extra_options": {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT}},
        }
    if method != "static":
        raise InputError(f"unknown CPU INT8 method {method!r}; choose {', '.join(CPU_METHODS)}")
    return {
        "record": {"flavour": "cpu", "method": "static", "format": "QDQ", "activations": "uint8 asymmetric",
                   "weights": "int8 symmetric per-channel, 8-bit (uint8 at load on x86 without VNNI)",
                   "ops": ["MatMul", "Gemm", "Conv chains"], "matmul": "weights only, float output",
                   "outputs_quantized": "Conv chains only"},
        # Calibrated over every Conv/MatMul/Gemm input (so the range cache serves the TensorRT flavour
        # of the same export too); only the planned nodes are quantized (nodes_to_quantize).
        "kwargs": {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QUInt8,
                   "weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": False,
                   "op_types_to_quantize": list(INT8_OPS),
                   "extra_options": {"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]}},
    }


def unquantize_other_inputs(model: onnx.ModelProto, quantized: Collection[str] | None = None,
                            keep: Collection[str] = ()) -> int:
    """Feed every node except the ``quantized`` ones (names; default: every Conv/MatMul/Gemm) its float
    input again; return how many inputs were rewired. Tensors in ``keep`` stay rounded.

    onnxruntime's quantizer gives each consumer of a quantized activation its own Q/DQ pair
    (``DedicatedQDQPair``) or one shared pair, so an FPN ``Resize``, a residual ``Add``, a
    ``LayerNormalization`` or the box decoding that shares a tensor with a quantized op would
    otherwise read the rounded tensor. Here their DQ->Q detour is removed: Q/DQ stays exactly on the
    inputs of the quantized ops, the layout TensorRT's explicit quantization expects; on the CPU a
    quantized Conv whose output nobody quantized reads runs as a float Conv.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    rewired = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if node.name in quantized if quantized is not None else node.op_type in INT8_OPS:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in keep:
                continue  # a stored (weight) tensor, or a tensor meant to stay rounded
            node.input[i] = q.input[0]
            rewired += 1
    if rewired:
        drop_dead_nodes(model)
    return rewired


class Int8Job(NamedTuple):
    """One INT8 file to write: what :func:`plan_int8` decided, :func:`write_int8` carries out."""

    flavour: str
    graph: Path  # the float graph to quantize
    record: dict[str, Any]  # the manifest's description so far ("method": "static" or "dynamic")
    # static: the nodes to quantize (None: every Conv/MatMul/Gemm); dynamic: the convs quantized static,
    # calibrated (PVT v2's depthwise and patch convs: _static_conv_nodes)
    nodes: list[str] | None
    scores: list[str]  # static: score-logit tensors, over SCORE_LOGIT_WINDOW

    def calibrates(self) -> bool:
        """Whether the job reads the calibration pictures: a static one does; a dynamic one (weights only)
        only for the convs it quantizes static, which a PVT v1 graph has none of."""
        return self.record["method"] == "static" or bool(self.nodes)

    def tensors(self) -> list[str]:
        """The activations a static job needs calibration ranges for (none for a dynamic one)."""
        import onnx

        from pvt_deploy.export import qdq

        if self.record["method"] != "static":
            return []
        spec = qdq.QdqSpec.from_quantize_static(int8_settings(self.flavour, "static")["kwargs"])
        return qdq.to_quantize(onnx.load(str(self.graph)), spec, self.nodes)


def surely_calibrates(flavours: Sequence[str], int8_cpu: str, *, task: str, depthwise: bool) -> bool:
    """Whether the INT8 files of ``flavours`` surely read the calibration pictures, told before their graph is
    planned (the export's memory check comes first): every static file does (TensorRT's, and the CPU flavour's
    static, as ``auto`` is for a detector's or a segmenter's conv chains), and a dynamic one for PVT v2's
    depthwise convs (``depthwise``: v2 has them in every block, v1 nowhere). A dynamic file of v1 calibrates
    only the patch convs that its layout keeps (a detector's, not a classifier's), which its plan says
    (:meth:`Int8Job.calibrates`)."""
    if not flavours:
        return False
    return (any(f != "cpu" for f in flavours) or int8_cpu == "static" or depthwise
            or (int8_cpu == "auto" and task in ("detect", "segment")))


def depthwise_convs(model: onnx.ModelProto) -> list[str]:
    """The depthwise convs of ``model`` (PVT v2's MLP conv), which the dynamic method quantizes static."""
    graph = model.graph
    weights = {i.name: list(i.dims) for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.name and len(n.input) > 1
            and len(dims := weights.get(n.input[1], [])) == 4 and dims[1] == 1
            and next((a.i for a in n.attribute if a.name == "group"), 1) == dims[0] > 1]


def plan_int8(prepared: str | os.PathLike[str], scratch: str | os.PathLike[str], *, flavour: str,
              method: str = "static", source: str | os.PathLike[str] | None = None) -> Int8Job:
    """Decide how ``flavour`` quantizes ``prepared`` (see :func:`prepare_for_quantization`).

    ``source``: the float graph ``prepared`` was made from. The CPU flavour quantizes it after
    :func:`pvt_deploy.export.optimize.int8_cpu_layout` (rather than ``prepared``: ONNX Runtime's
    pre-processing reorders the attention's transposes beyond what the attention fusion
    recognises), written beside ``scratch``; without it the static CPU flavour quantizes ``prepared``.
    """
    import onnx

    nodes: list[str] | None = None
    scores: list[str] = []
    layout: dict[str, int] | None = None
    graph = Path(prepared)
    if flavour == "cpu" and method in ("auto", "static"):
        plan = cpu_int8_plan(prepared)
        method = "static" if method == "static" or plan.convs else "dynamic"
        if method == "static" and source is not None:
            graph, layout = write_cpu_layout(source, Path(scratch).with_suffix(".layout.onnx"), method="static")
            plan = cpu_int8_plan(graph)
        nodes, scores = plan.nodes, plan.scores
    if flavour == "trt":
        nodes = trt_int8_nodes(prepared)
    if flavour == "cpu" and method == "dynamic":  # the dynamic layout, and which of its convs are calibrated
        graph, layout = write_cpu_layout(source or prepared, Path(scratch).with_suffix(".layout.onnx"))
        nodes = sum(_static_conv_nodes(onnx.load(str(graph), load_external_data=False)), [])
    record = dict(int8_settings(flavour, method)["record"])
    if layout is not None:
        record["layout"] = layout
    if record["method"] == "static" and nodes is not None:
        record["nodes"] = len(nodes)
        if scores:
            record["score_logit_window"] = list(SCORE_LOGIT_WINDOW)
    return Int8Job(flavour, graph, record, nodes, scores)


def calibrate_jobs(source: str | os.PathLike[str], jobs: Sequence[Int8Job], batches: Sequence[Batch],
                   input_name: str = "images") -> dict[str, Any]:
    """MinMax ranges of what the static ``jobs`` quantize, measured on the float graph ``source`` in
    one pass over ``batches`` (:func:`pvt_deploy.export.qdq.calibrate`). The jobs quantize rewritten
    copies of ``source`` (ONNX Runtime's pre-processing, :func:`write_cpu_layout`) whose quantized
    tensors keep their names and values; one a rewrite renamed is left out here, and
    :func:`write_int8` calibrates it on the job's own graph."""
    import onnx

    from pvt_deploy.export import qdq

    wanted = dict.fromkeys(t for job in jobs for t in job.tensors())
    if not wanted:
        return {}
    model = onnx.load(str(source))
    known = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    return qdq.calibrate(model, [t for t in wanted if t in known], batches, input_name)


def write_int8(job: Int8Job, scratch: str | os.PathLike[str], batches: Sequence[Batch],
               ranges: dict[str, Any] | None = None, input_name: str = "images",
               ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Write the INT8 graph of ``job``; return it and its manifest record.

    Static jobs are written by :mod:`pvt_deploy.export.qdq` (the graph ONNX Runtime's
    ``quantize_static`` writes for :func:`int8_settings`, in a fraction of the time) from ``ranges``
    (:func:`calibrate_jobs`; tensors missing there are calibrated on ``batches`` and added), and leave
    with Q/DQ only on the inputs of the quantized nodes (and on the outputs the CPU flavour keeps
    INT8), see :func:`unquantize_other_inputs`. ``scratch`` is a path for intermediate graphs (pass a
    temporary path); the returned graph is the final one, which the caller saves where it belongs.
    """
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    from pvt_deploy.export import qdq

    record = dict(job.record)
    quiet = logging.getLogger("root"), logging.getLogger()
    levels = [q.level for q in quiet]
    for q in quiet:  # the quantizer logs advice through the root logger
        q.setLevel(max(q.level, logging.ERROR))
    try:
        if record["method"] == "dynamic":
            graph = job.graph  # the dynamic layout (plan_int8)
            if job.flavour == "cpu":
                graph, depthwise, patches = _static_convs(graph, Path(scratch).with_suffix(".depthwise.onnx"),
                                                          batches, input_name)
                if depthwise or patches:
                    static = {"format": "QDQ", "activations": "uint8 asymmetric (MinMax)",
                              "weights": "int8 symmetric per-channel",
                              "calibration": {"method": "minmax", "batches": len(batches),
                                              "images": sum(len(b.names) for b in batches)}}
                    if depthwise:
                        record["static_depthwise"] = {"convs": depthwise, **static}
                    if patches:
                        record["static_patch_convs"] = {"convs": patches, **static}
            quantize_dynamic(str(graph), str(scratch), **int8_settings(job.flavour, "dynamic")["kwargs"])
            model = onnx.load(str(scratch))
        else:
            spec = qdq.QdqSpec.from_quantize_static(int8_settings(job.flavour, "static")["kwargs"])
            model = onnx.load(str(job.graph))
            qdq.quantize(model, ranges or {}, spec, nodes=job.nodes,
                         overrides=dict.fromkeys(job.scores, SCORE_LOGIT_WINDOW),
                         calibrate_missing=lambda m, missing: qdq.calibrate(m, missing, batches, input_name))
            record["calibration"] = {"method": "minmax", "batches": len(batches),
                                     "images": sum(len(b.names) for b in batches)}
            record["float_inputs_restored"] = unquantize_other_inputs(model, job.nodes, keep=job.scores)
    except (InputError, PvtDeployError):
        raise
    except Exception as e:
        raise PvtDeployError(f"INT8 quantization ({job.flavour}) failed: {joined_lines(e)[:300]}") from e
    finally:
        for q, lv in zip(quiet, levels, strict=True):
            q.setLevel(lv)
    return model, record


def quantize_int8(prepared: str | os.PathLike[str], dst: str | os.PathLike[str], *, flavour: str,
                  batches: Sequence[Batch], method: str = "static", input_name: str = "images",
                  source: str | os.PathLike[str] | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """One INT8 file: :func:`plan_int8`, then :func:`write_int8` calibrating on its own graph.
    ``dst``: a scratch path (see :func:`write_int8`)."""
    job = plan_int8(prepared, dst, flavour=flavour, method=method, source=source)
    return write_int8(job, dst, batches, input_name=input_name)


def write_cpu_layout(src: str | os.PathLike[str], dst: Path, method: str = "dynamic") -> tuple[Path, dict[str, int]]:
    """Write ``src`` with :func:`pvt_deploy.export.optimize.int8_cpu_layout` applied to ``dst``:
    (dynamic method only) patch and spatial-reduction convs as MatMuls, so they are quantized like the
    other linear layers; the depthwise MLP convs' transposes in a form ONNX Runtime folds away; each
    attention as one ``MultiHeadAttention`` (dynamic method: then as plain operators) and each GELU as
    one node."""
    import onnx

    from pvt_deploy.export.optimize import int8_cpu_layout

    model = onnx.load(str(src))
    counts = int8_cpu_layout(model, method=method)
    onnx.save_model(model, str(dst))
    return dst, counts


def _patch_embedding_convs(model: onnx.ModelProto) -> list[str]:
    """The overlapping patch embeddings of PVT v2 (``proj`` -> flatten -> transpose -> ``norm``: a Conv
    whose output is reshaped to tokens, transposed and layer-normalised) but the first, which reads the
    normalised image: on its 3 channels INT8 gains nothing and costs agreement."""
    from pvt_deploy.export.optimize import _Graph

    g = _Graph(model)
    image_channels = {d.dim_value for i in g.graph.input for d in i.type.tensor_type.shape.dim[1:2] if d.dim_value}

    def only(tensor: str, op: str) -> onnx.NodeProto | None:
        reader = g.data_consumer(tensor)
        return reader if reader is not None and reader.op_type == op else None

    found = []
    for n in g.graph.node:
        weight = g.inits.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        dims = list(weight.dims) if weight is not None else []
        if not n.name or len(dims) != 4 or dims[1] in image_channels:
            continue
        if next((a.i for a in n.attribute if a.name == "group"), 1) != 1:
            continue
        reshape = only(n.output[0], "Reshape")
        transpose = only(reshape.output[0], "Transpose") if reshape is not None else None
        if transpose is None or next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None) != [0, 2, 1]:
            continue
        if only(transpose.output[0], "LayerNormalization") is not None:
            found.append(n.name)
    return found


def _static_conv_nodes(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """The depthwise convs (PVT v2's MLP conv) and the overlapping patch embeddings
    (:func:`_patch_embedding_convs`) of ``model``, which the dynamic method quantizes static."""
    return depthwise_convs(model), _patch_embedding_convs(model)


def _static_convs(src: Path, dst: Path, batches: Sequence[Batch], input_name: str) -> tuple[Path, int, int]:
    """Quantize the depthwise convs of ``src`` (PVT v2's MLP conv) and its overlapping patch embeddings
    (:func:`_patch_embedding_convs`) with calibrated static INT8, input and output, and write the graph
    to ``dst``; return it and how many of each. Nothing is written (``src``, 0, 0) when there are none
    or no calibration batches.

    ONNX Runtime runs such a depthwise conv as a channels-last ``QLinearConv`` straight on the token
    layout: the float conv needed a reorder of the block's widest tensor on each side, and those
    reorders took more time than the conv (``benchmarks/ort_profile.py --model pvt_v2_b0-cls``). The
    quantized output is dequantized once, into the GELU (:func:`pvt_deploy.export.optimize.fuse_gelu`).
    The patch embeddings of stages 2-4 (3x3, stride 2) run as ``QLinearConv`` in 0.3-0.4 ms instead of
    1.0-1.3 ms each (``pvt_v2_b0-cls``, batch 4, one thread); their outputs are dequantized into the
    LayerNorm.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from pvt_deploy.export.calibration import calibration_reader

    depthwise, patches = _static_conv_nodes(onnx.load(str(src), load_external_data=False))
    if not (depthwise or patches) or not batches:
        return src, 0, 0
    quantize_static(str(src), str(dst), calibration_reader(batches, input_name), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    reduce_range=False, op_types_to_quantize=["Conv"], nodes_to_quantize=depthwise + patches,
                    calibrate_method=CalibrationMethod.MinMax)
    return dst, len(depthwise), len(patches)


def score_window_overrides(scores: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """``TensorQuantOverrides`` that quantize the ``scores`` tensors over :data:`SCORE_LOGIT_WINDOW`."""
    import numpy as np

    lo, hi = (np.float32(v) for v in SCORE_LOGIT_WINDOW)  # the quantizer wants numpy scalars here
    return {t: [{"rmin": lo, "rmax": hi}] for t in scores}


class Int8Plan(NamedTuple):
    nodes: list[str]  # every node to quantize
    convs: list[str]  # the Conv chains among them
    scores: list[str]  # score-logit tensors, quantized over SCORE_LOGIT_WINDOW


def cpu_int8_plan(path: str | os.PathLike[str]) -> Int8Plan:
    """What the CPU INT8 graph quantizes (node names) and which tensors are score logits.

    * Every MatMul/Gemm with a stored weight. Its output stays float, so ONNX Runtime runs it as
      ``MatMulIntegerToFloat`` and no rounding is added to the residual stream or the attention.
    * Convs that belong to a chain: the output feeds another Conv (through an optional ReLU), or the
      input comes from such a Conv. These are the FPN and RetinaNet head towers, which run as
      ``QLinearConv`` with INT8 outputs, plus the head's two output convs at the end of the towers.
    * Convs that read the image or a token sequence and write into a LayerNorm or an Add stay FP32:
      patch embeddings, spatial-reduction convs, v2's depthwise MLP conv and the FPN laterals, but the
      top one, which writes straight into its FPN conv (no top-down Add) and so is in a chain.
      Quantizing them rounds twice and saves little: they are under 3 % of a detector's multiply-adds.
    * Score tensors: outputs of the classification convs (``retina_cls``, by node or weight name).
      Their INT8 range is the score window (:data:`SCORE_LOGIT_WINDOW`), not the calibrated min/max.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    stored = _stored(graph)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def after_relu(tensor: str) -> list[onnx.NodeProto]:
        return [m for c in consumers.get(tensor, [])
                for m in (consumers.get(c.output[0], []) if c.op_type == "Relu" else [c])]

    def before_relu(tensor: str) -> onnx.NodeProto | None:
        p = producer.get(tensor)
        return producer.get(p.input[0]) if p is not None and p.op_type == "Relu" else p

    convs = [n for n in graph.node if n.op_type == "Conv"]
    feeding = {c.name for c in convs if any(m.op_type == "Conv" for m in after_relu(c.output[0]))}
    chained = [c for c in convs if c.name in feeding or getattr(before_relu(c.input[0]), "name", None) in feeding]
    chained_names = {c.name for c in chained}
    nodes = [n.name for n in graph.node if n.name in chained_names or _weight_product(n, stored)]
    scores = [c.output[0] for c in chained if SCORE_CONV_MARKER in c.name or SCORE_CONV_MARKER in c.input[1]]
    return Int8Plan(nodes, [c.name for c in chained], scores)


def trt_int8_nodes(path: str | os.PathLike[str]) -> list[str]:
    """What the TensorRT INT8 graph quantizes (node names): every Conv, and every MatMul/Gemm with a stored
    weight. The activation-by-activation MatMuls (attention's, and the size-generic adaptive pooling's,
    whose matrix of 1/bin-size changes with the input size, so a scale calibrated at one size would clip
    it at another) stay float: ONNX Runtime's ``quantize_static`` writes Q/DQ on them in QDQ format,
    where its ``MatMulConstBOnly`` does not apply, so they are left out by name."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    stored = _stored(graph)
    return [n.name for n in graph.node if n.op_type == "Conv" or _weight_product(n, stored)]


def _stored(graph: onnx.GraphProto) -> set[str]:
    """The graph's stored tensors: initializers and Constant outputs."""
    return {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _weight_product(node: onnx.NodeProto, stored: set[str]) -> bool:
    """A MatMul or Gemm whose second input (the weight) is stored."""
    return node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in stored


def temporary_dir(parent: str | os.PathLike[str]) -> tempfile.TemporaryDirectory[str]:
    """Scratch space beside the artifact (same file system, so finished files move atomically)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".pvt-export-", dir=parent)
