"""FP16 and INT8 variants of an exported graph (precision lives in the ONNX, see DESIGN §4).

FP16 (``model.fp16.onnx``): weights and activations in float16 except where float16 loses: every
``LayerNormalization`` and ``Softmax`` (variance and exp overflow after attention), ``ReduceMean``
(token averaging of the v2 classifier sums thousands of values), ONNX Runtime's default block list
(TopK, Range, Min/Max, NMS...), and the whole *tail* of the graph — every node after the last
Conv/MatMul/Gemm, i.e. RetinaNet's sigmoid/top-k/box decoding (``exp`` of deltas, pixel coordinates
above 2048 where float16 steps by 2) and segmentation's resize/argmax. Inputs and outputs stay
float32 so every runtime feeds and reads the graph the same way.

INT8: Q/DQ graphs calibrated on images preprocessed exactly as at inference
(:mod:`pvt_deploy.export.calibration`), quantizing the inputs of Conv, Gemm and weight MatMuls only
(``MatMulConstBOnly``): LayerNorm, Softmax, Resize and the activation-by-activation MatMuls of
attention and of the size-generic adaptive pooling stay float. (A pooling matrix holds 1/bin-size,
which changes with the input size, so a scale calibrated at one size would clip it at another.)

* TensorRT flavour (``model.int8.trt.onnx``): symmetric INT8 activations (S8, zero point 0) and
  per-channel symmetric INT8 weights, Q/DQ on operator inputs only — what TensorRT's explicit
  quantization fuses into INT8 kernels.
* CPU flavour (``model.int8.onnx``): what ONNX Runtime's CPU kernels run fastest at acceptable
  accuracy. ``method="auto"`` (the default) picks by graph, from ``benchmarks/int8_variants.py``
  (speed interleaved with FP32, agreement with PyTorch FP32 on 12 real pictures, synthetic seeded
  weights; 2-core AMD EPYC, AVX2 without VNNI, ORT 1.32): for RetinaNet detectors static Q/DQ (U8
  activations, per-channel 7-bit S8 weights, outputs quantized so Conv+ReLU chains fuse into
  ``QLinearConv``) on the head's stacked 3x3 convs only (``method="head"``) — pvt_v2_b0 640²
  1.31x ORT FP32 at detection F1 0.950, pvt_small 1.17x at F1 0.953 — where quantizing every
  Conv/MatMul (the ``static`` recipe below) was 1.33-1.45x but F1 0.73-0.87 and cosine 0.976 on
  pvt_small; for other graphs dynamic INT8 (pvt_small classifier batch 8 1.34x, top-1 agreement
  1.00; static 1.28x at top-1 0.83; on pvt_v2_b0's classifier static INT8 was *slower* than FP32).
  ``method="static"``: static Q/DQ with U8 activations and per-channel S8 weights quantized to 7 bits
  (``reduce_range``), on the same operator inputs. Measured on the project's 2-core AVX2 machine (no
  VNNI; ORT 1.32, interleaved runs, min of 5, machine shared with other jobs): pvt_v2_b0 RetinaNet
  640² 1.29x FP32, pvt_small RetinaNet 640² 1.33x, pvt_small backbone 512² 1.25x (cosine 0.9996);
  dynamic INT8 (``method="dynamic"``: weights-only on MatMul/Gemm, no calibration) was 1.00x /
  1.08x / 1.22x (cosine 0.99993) — the RetinaNet/FPN convolutions dominate detectors and dynamic
  quantization leaves them in FP32 (dynamic ConvInteger was 3x *slower* than FP32). Without
  ``reduce_range`` the U8S8 products saturate int16 on CPUs without VNNI (backbone cosine 0.974);
  on VNNI CPUs the 7-bit weights cost little. Each export records the latency it measured on its
  parity images next to the variant in the manifest.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvt_deploy.errors import InputError, PvtDeployError
from pvt_deploy.export.graph import drop_dead_nodes, toposort

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
CPU_METHODS = ("auto", "head", "static", "dynamic")
# RetinaNet's stacked head convs (``bbox_head.{cls,reg}_convs.{k}``): most of a detector's FLOPs.
HEAD_CONV_MARKERS = ("/bbox_head/", "_convs.")
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
    tail = tail_nodes(model) if keep_tail else []
    ops = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    chatty = logging.getLogger(float16.__name__)  # logs every shared initializer at INFO
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=ops,
                                                     node_block_list=tail)
    finally:
        chatty.setLevel(level)
    toposort(converted)
    present = {n.op_type for n in model.graph.node}
    record = {"keep_io_types": bool(keep_io_types), "fp32_ops": [op for op in ops if op in present],
              "fp32_tail_nodes": len(tail)}
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


def int8_settings(flavour: str, method: str = "static") -> dict[str, Any]:
    """What each flavour is, for ``quantize_static``/``quantize_dynamic`` and for the manifest."""
    from onnxruntime.quantization import QuantFormat, QuantType

    if flavour == "trt":
        return {
            "record": {"flavour": "trt", "method": "static", "format": "QDQ", "activations": "int8 symmetric",
                       "weights": "int8 symmetric per-channel", "ops": list(INT8_OPS),
                       "matmul": "weights only", "outputs_quantized": False},
            "kwargs": {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8,
                       "weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": False,
                       "op_types_to_quantize": list(INT8_OPS),
                       "extra_options": {**INPUT_ONLY_QDQ, "ActivationSymmetric": True, "WeightSymmetric": True,
                                         "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}}},
        }
    if flavour != "cpu":
        raise InputError(f"unknown INT8 flavour {flavour!r}; choose cpu, trt or both")
    if method == "dynamic":
        return {
            "record": {"flavour": "cpu", "method": "dynamic", "format": "QOperator (dynamic)",
                       "activations": "uint8 per batch at run time", "weights": "int8 per-tensor",
                       "ops": ["MatMul", "Gemm"], "matmul": "weights only"},
            "kwargs": {"weight_type": QuantType.QInt8, "op_types_to_quantize": ["MatMul", "Gemm"],
                       "extra_options": {"MatMulConstBOnly": True}},
        }
    if method == "head":
        return {
            "record": {"flavour": "cpu", "method": "static", "scope": "retinanet head convs", "format": "QDQ",
                       "activations": "uint8 asymmetric", "weights": "int8 symmetric per-channel, 7-bit (reduce_range)",
                       "ops": ["Conv"], "outputs_quantized": True},
            # Calibrated over every Conv/MatMul/Gemm input (so the range cache serves the TensorRT
            # flavour of the same export too); only the head's nodes are quantized (nodes_to_quantize).
            "kwargs": {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QUInt8,
                       "weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": True,
                       "op_types_to_quantize": list(INT8_OPS), "extra_options": {"MatMulConstBOnly": True}},
        }
    if method != "static":
        raise InputError(f"unknown CPU INT8 method {method!r}; choose {', '.join(CPU_METHODS)}")
    return {
        "record": {"flavour": "cpu", "method": "static", "format": "QDQ", "activations": "uint8 asymmetric",
                   "weights": "int8 symmetric per-channel, 7-bit (reduce_range)", "ops": list(INT8_OPS),
                   "matmul": "weights only", "outputs_quantized": False},
        "kwargs": {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QUInt8,
                   "weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": True,
                   "op_types_to_quantize": list(INT8_OPS), "extra_options": dict(INPUT_ONLY_QDQ)},
    }


def unquantize_other_inputs(model: onnx.ModelProto, quantized_ops: Sequence[str] = INT8_OPS) -> int:
    """Feed every op except ``quantized_ops`` its float input again; return how many were rewired.

    onnxruntime's quantizer gives each consumer of a quantized activation its own Q/DQ pair
    (``DedicatedQDQPair``), so an FPN ``Resize``, a residual ``Add`` or a ``LayerNormalization``
    that shares its input with a Conv would otherwise read the rounded tensor. Here their DQ->Q
    detour is removed: Q/DQ stays exactly on the inputs of the quantized ops, the layout TensorRT's
    explicit quantization expects and the CPU kernels fuse.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    rewired = 0
    for node in model.graph.node:
        if node.op_type in quantized_ops or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a stored (weight) tensor, not an activation detour
            node.input[i] = q.input[0]
            rewired += 1
    if rewired:
        drop_dead_nodes(model)
    return rewired


def quantize_int8(prepared: str | os.PathLike[str], dst: str | os.PathLike[str], *, flavour: str,
                  batches: Sequence[Batch], method: str = "static", cache: str | os.PathLike[str] | None = None,
                  input_name: str = "images") -> dict[str, Any]:
    """Quantize ``prepared`` (see :func:`prepare_for_quantization`) into ``dst``; return the record.

    ``cache``: a calibration-range file shared by the static flavours of one export, so the images
    run through the graph once (ranges are raw min/max; symmetry is applied per flavour afterwards).
    ``dst`` is written by onnxruntime directly: pass a temporary path and move it into place.
    """
    from onnxruntime.quantization import CalibrationMethod, quantize_dynamic, quantize_static

    from pvt_deploy.export.calibration import calibration_reader

    head: list[str] = []
    if flavour == "cpu" and method in ("auto", "head"):
        head = head_conv_nodes(prepared)
        if method == "head" and not head:
            raise InputError("--int8-cpu head is for RetinaNet detectors; this graph has no head convs")
        method = "head" if head else "dynamic"
    settings = int8_settings(flavour, method)
    if head:
        settings["kwargs"]["nodes_to_quantize"] = head
    record = dict(settings["record"])
    if head:
        record["nodes"] = len(head)
    quiet = logging.getLogger("root"), logging.getLogger()
    levels = [q.level for q in quiet]
    for q in quiet:  # the quantizer logs advice through the root logger
        q.setLevel(max(q.level, logging.ERROR))
    try:
        if record["method"] == "dynamic":
            quantize_dynamic(str(prepared), str(dst), **settings["kwargs"])
        else:
            quantize_static(str(prepared), str(dst), calibration_reader(batches, input_name),
                            calibrate_method=CalibrationMethod.MinMax,
                            calibration_cache_path=str(cache) if cache else None, **settings["kwargs"])
            record["calibration"] = {"method": "minmax", "batches": len(batches),
                                     "images": sum(len(b.names) for b in batches)}
    except (InputError, PvtDeployError):
        raise
    except Exception as e:
        raise PvtDeployError(f"INT8 quantization ({flavour}) failed: {' '.join(str(e).split())[:300]}") from e
    finally:
        for q, lv in zip(quiet, levels, strict=True):
            q.setLevel(lv)
    return record


def head_conv_nodes(path: str | os.PathLike[str]) -> list[str]:
    """Names of RetinaNet's stacked head convs in the graph at ``path`` (empty for other models)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "Conv" and all(m in n.name for m in HEAD_CONV_MARKERS)]


def temporary_dir(parent: str | os.PathLike[str]) -> tempfile.TemporaryDirectory[str]:
    """Scratch space beside the artifact (same file system, so finished files move atomically)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".pvt-export-", dir=parent)
