"""ONNX graph utilities for the exporter: simplify, name dims, attach metadata, save, and check.

The checks encode what makes a PVT graph deployable, and the exporter refuses a graph that fails them
(they are also asserted by the tests on the written files):

* opset >= 17, so every ``nn.LayerNorm`` is one ``LayerNormalization`` node — TensorRT maps it to its
  normalisation layer and keeps it in FP32; a decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div)
  overflows in FP16 after attention and is slower everywhere;
* no shape constant baked from the export size in a dynamic graph (:func:`find_baked_shapes`): a
  ``Reshape`` to ``[1, 3136, 64]`` traced at 224x224 runs at 224x224 only, and some bakes fail
  silently (wrong numbers, no error) rather than loudly;
* ``onnx.checker`` passes and the inputs/outputs carry the contract's names.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pvt_deploy.errors import PvtDeployError
from pvt_deploy.utils import joined_lines
from pvt_deploy.utils.files import atomic_path, json_dumps

if TYPE_CHECKING:
    import onnx
    from torch import nn

MIN_OPSET = 17

# Operands that hold sizes, by op type: a constant here is a size the graph will use as is.
# (Resize's ``roi``, Slice's axes/steps and Range's delta are not sizes.) Clip/Min/Max bounds are
# included because box clipping to the image size is where a baked size fails silently: the dynamo
# exporter turns ``torch.as_tensor(width)`` into the trace width.
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Resize": (2, 3),
    "Upsample": (1,), "Slice": (1, 2), "Range": (0, 1), "TopK": (1,), "Split": (1,),
    "Clip": (1, 2), "Min": (0, 1), "Max": (0, 1),
}
# Feature strides a PVT graph computes sizes at: patch embeds (4..32) and RetinaNet's P6/P7 (64, 128).
SIZE_STRIDES = (1, 2, 4, 8, 16, 32, 64, 128)
NUM_ANCHORS = 9
# Literal sizes in the model code that are not module attributes: the 7x7 pool of linear SRA, anchors.
CODE_CONSTANTS = frozenset({7, NUM_ANCHORS})
# Ops that a decomposed LayerNorm produces and that nothing else in a PVT graph uses.
DECOMPOSED_LAYERNORM_OPS = ("Pow", "Sqrt")


# --------------------------------------------------------------------------------------------------
# Inspection helpers
# --------------------------------------------------------------------------------------------------


def node_count(model: onnx.ModelProto) -> int:
    return len(model.graph.node)


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def dtype_name(elem_type: int) -> str:
    from onnx import helper

    return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))


def _dims(value: Any) -> list[int | str] | None:
    """A graph input's or output's dims (a symbolic one by its name, an unnamed one as "?"); None where the
    graph declares no shape: a tensor of unknown rank, or a value that is no tensor (a sequence, a map).
    Not [], which is a scalar's."""
    if value.type.WhichOneof("value") != "tensor_type" or not value.type.tensor_type.HasField("shape"):
        return None
    dims: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return dims


def io_spec(model: onnx.ModelProto) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The manifest's ``inputs`` and ``outputs``: name, dtype and shape (symbolic dims as strings; None where
    the graph declares none, :func:`_dims`). A value that is not a tensor (another tool's graph: a sequence,
    a map) has its kind as dtype and shape None."""
    init = {i.name for i in model.graph.initializer}

    def dtype(v: Any) -> str:
        kind = str(v.type.WhichOneof("value") or "tensor_type")
        return _type_name(v.type.tensor_type.elem_type) if kind == "tensor_type" else kind.removesuffix("_type")

    def spec(values: Iterable[Any]) -> list[dict[str, Any]]:
        return [{"name": v.name, "dtype": dtype(v), "shape": _dims(v)} for v in values if v.name not in init]

    return spec(model.graph.input), spec(model.graph.output)


def constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every tensor whose value is known without running the graph: initializers and Constant nodes."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type != "Constant":
            continue
        for a in n.attribute:
            if a.name == "value":
                values[n.output[0]] = numpy_helper.to_array(a.t)
            elif a.name in ("value_int", "value_ints", "value_float", "value_floats"):
                values[n.output[0]] = np.asarray(onnx_attr(a))
    return values


def onnx_attr(a: Any) -> Any:
    from onnx import helper

    return helper.get_attribute_value(a)


# What ``pvt-deploy info --graph`` reads from a graph (:func:`graph_summary`), in the words of the
# FP16 and INT8 writers (:mod:`pvt_deploy.export.precision`, :mod:`pvt_deploy.export.qdq`).
# Nodes that convert or copy a tensor and compute nothing: the Casts an FP16 conversion adds around
# what it keeps in float32, and the Identity nodes through which that float32 graph reads its tensors back.
CAST_OPS = ("Cast", "CastLike", "Identity")
# The integer kernels of the ops the INT8 variants quantize (qdq.QUANT_OPS), by their float op: ONNX's
# and ONNX Runtime's (com.microsoft). In a Q/DQ graph a quantized op keeps its float name and reads
# DequantizeLinear outputs.
INTEGER_OPS = {"ConvInteger": "Conv", "QLinearConv": "Conv", "MatMulInteger": "MatMul", "QLinearMatMul": "MatMul",
               "DynamicQuantizeMatMul": "MatMul", "MatMulIntegerToFloat": "MatMul", "QGemm": "Gemm"}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
_FLOAT_TYPE_NAMES = ("FLOAT", "FLOAT16", "DOUBLE", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
                     "FLOAT8E5M2FNUZ", "FLOAT4E2M1")
_FOUR_BIT_TYPE_NAMES = ("INT4", "UINT4", "FLOAT4E2M1")


def value_types(model: onnx.ModelProto) -> tuple[dict[str, int], set[str]]:
    """The element type (``TensorProto`` data type) of each tensor ONNX shape inference types in ``model``:
    its value_info, inputs and outputs. Inferred on a copy whose large initializers are typed inputs
    instead (only small ones can feed shape arithmetic): the same types in 0.02 s instead of 0.7 s for
    ``pvt_small``, and none of the weights' bytes copied. Returns the types and the names of the
    initializers that were made inputs."""
    import onnx
    from onnx import helper

    g = model.graph
    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    lg = light.graph
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    promoted = set()
    for init in g.initializer:
        if int(np.prod(init.dims)) <= 64:
            lg.initializer.append(init)
        else:
            lg.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
            promoted.add(init.name)
    inferred = onnx.shape_inference.infer_shapes(light).graph
    return ({v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input, *inferred.output)
             if v.type.HasField("tensor_type")}, promoted)


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto

    if elem_type != TensorProto.STRING:  # numpy holds strings as Python objects: ONNX's name, not 'object'
        try:
            return dtype_name(elem_type)
        except (KeyError, TypeError, ValueError):  # a type numpy has no name for (a newer float, undefined)
            pass
    return str(TensorProto.DataType.Name(elem_type)).lower()


def _stored_bytes(tensor: onnx.TensorProto) -> int:
    """What ``tensor``'s values take, from its dims and type alone (its data may be external and not
    loaded): 4-bit types packed two to a byte."""
    from onnx import TensorProto, helper

    count = int(math.prod(tensor.dims))
    if tensor.data_type in {getattr(TensorProto, n) for n in _FOUR_BIT_TYPE_NAMES if hasattr(TensorProto, n)}:
        return (count + 1) // 2
    if tensor.data_type == TensorProto.STRING:  # no fixed size (numpy's 8-byte object pointers are not theirs):
        return sum(len(s) for s in tensor.string_data)  # their bytes, which ONNX never stores externally
    try:
        return count * int(np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize)
    except (KeyError, TypeError, ValueError):  # a type numpy has no name for
        return 0


def model_header(model: onnx.ModelProto) -> dict[str, Any]:
    """What a model file says of itself before its graph: IR version, opsets by domain, producer."""
    return {"ir_version": int(model.ir_version),
            "opsets": {o.domain or "ai.onnx": int(o.version) for o in model.opset_import},
            "producer": {"name": model.producer_name, "version": model.producer_version}}


def graph_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """What is inside ``model`` (``pvt-deploy info --graph``, as ``polygraphy inspect model --show layers``):
    IR version, opsets, producer, nodes, initializers by dtype (sizes from their dims, so a graph loaded
    without its external data is summarised too), the operator histogram (most first), the element type
    each op type computes in, and for quantized graphs how many of the Conv/MatMul/Gemm nodes are.

    A node computes in the element type of its first floating output (ONNX shape inference on the loaded
    graph), or is ``"?"`` where an output's type is unknown and none is known to be float; a node with
    no float output (shape arithmetic, indices) is counted by its first output's type. The nodes are
    split into ``compute`` (a float output, by its type), ``casts`` (:data:`CAST_OPS`), ``qdq``
    (:data:`QDQ_OPS`), ``non_float`` and ``unknown``. A Conv/MatMul/Gemm is quantized where it reads a DequantizeLinear output (a Q/DQ graph) or
    is one of the :data:`INTEGER_OPS`."""
    from onnx import TensorProto

    from pvt_deploy.export.optimize import graph_precision
    from pvt_deploy.export.qdq import QUANT_OPS

    g = model.graph
    floats = {getattr(TensorProto, n) for n in _FLOAT_TYPE_NAMES if hasattr(TensorProto, n)}
    note = None
    try:
        types, _ = value_types(model)
    except Exception as e:  # noqa: BLE001 - onnx raises its own errors for graphs it cannot infer
        types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
        note = f"shape inference failed ({joined_lines(e)[:200]}): the types are those the file stores"
    types.update({i.name: i.data_type for i in g.initializer})
    by_op: dict[str, Counter[str]] = {}
    compute: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    producer = {o: n.op_type for n in g.node for o in n.output}
    quantized = {op: [0, 0] for op in QUANT_OPS}  # op -> [quantized, in all]
    for n in g.node:
        outs = [types.get(o, TensorProto.UNDEFINED) for o in n.output if o]
        floating = next((t for t in outs if t in floats), None)
        if floating is not None:
            name = _type_name(floating)
        elif not outs or TensorProto.UNDEFINED in outs:
            name = "?"
        else:
            name = _type_name(outs[0])
        if n.op_type in QDQ_OPS:
            kinds["qdq"] += 1
        elif n.op_type in CAST_OPS:
            kinds["casts"] += 1
        elif floating is not None:
            compute[name] += 1
        else:
            kinds["unknown" if name == "?" else "non_float"] += 1
        by_op.setdefault(n.op_type, Counter())[name] += 1
        base = INTEGER_OPS.get(n.op_type, n.op_type)
        if base in quantized:
            quantized[base][1] += 1
            quantized[base][0] += base != n.op_type or any(producer.get(x) == "DequantizeLinear" for x in n.input[:2])
    initializers: dict[str, dict[str, int]] = {}
    for init in g.initializer:
        entry = initializers.setdefault(_type_name(init.data_type), {"count": 0, "bytes": 0, "values": 0})
        entry["count"] += 1
        entry["bytes"] += _stored_bytes(init)
        entry["values"] += math.prod(init.dims)

    def most_first(counts: Mapping[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    ops = most_first(op_counts(model))
    return {
        "precision": graph_precision(model), **model_header(model),
        "nodes": node_count(model), "parameters": sum(e["values"] for e in initializers.values()),
        "initializers": {"count": len(g.initializer), "bytes": sum(e["bytes"] for e in initializers.values()),
                         "by_dtype": dict(sorted(initializers.items(), key=lambda kv: -kv[1]["bytes"]))},
        "ops": ops, "types_by_op": {op: most_first(by_op[op]) for op in ops},
        "compute": most_first(compute), "casts": kinds["casts"], "qdq": kinds["qdq"], "non_float": kinds["non_float"],
        "unknown": kinds["unknown"],
        "quantized": {op: {"quantized": q, "nodes": total} for op, (q, total) in quantized.items() if total},
        **({"note": note} if note else {}),
    }


# --------------------------------------------------------------------------------------------------
# Editing
# --------------------------------------------------------------------------------------------------


def name_dims(model: onnx.ModelProto, names: Mapping[str, Mapping[int, str | int]]) -> None:
    """Give dynamic I/O dims readable names (``batch``, ``height``...), whatever the exporter chose.

    Only dims that are symbolic are touched: a string renames it, an int fixes it (a size the
    exporter's shape inference lost, e.g. a TopK with a constant k). A static dim stays a number.
    """
    for value in (*model.graph.input, *model.graph.output):
        wanted = names.get(value.name, {})
        for i, d in enumerate(value.type.tensor_type.shape.dim):
            if i in wanted and not d.HasField("dim_value"):
                if isinstance(wanted[i], int):
                    d.dim_value = int(wanted[i])
                else:
                    d.dim_param = str(wanted[i])


def toposort(model: onnx.ModelProto) -> None:
    """Reorder nodes topologically, keeping the existing order wherever it is already valid.

    Graph rewriters (onnxruntime's float16 converter) append Cast nodes at the end of the list; ONNX
    requires producers before consumers.
    """
    import heapq

    nodes = list(model.graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    indegree = [0] * len(nodes)
    users: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        deps = {producer[x] for x in n.input if x in producer and producer[x] != i}
        indegree[i] = len(deps)
        for d in deps:
            users.setdefault(d, []).append(i)
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, ()):
            indegree[u] -= 1
            if indegree[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise PvtDeployError("the graph has a cycle; cannot order its nodes")
    if order != list(range(len(nodes))):
        del model.graph.node[:]
        model.graph.node.extend(nodes[i] for i in order)


def drop_dead_nodes(model: onnx.ModelProto) -> None:
    """Remove nodes whose outputs nobody reads (iteratively), then initializers nobody reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {x for n in model.graph.node for x in n.input} | outputs
        dead = [n for n in model.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {x for n in model.graph.node for x in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def replace_nodes(model: onnx.ModelProto, replacements: Mapping[str, Sequence[Any]]) -> None:
    """Put ``replacements[name]`` where the node whose first output is ``name`` stands (keeping the
    order), then drop what nothing reads any more."""
    keep: list[Any] = []
    for n in model.graph.node:
        if n.output and n.output[0] in replacements:
            keep.extend(replacements[n.output[0]])
            continue
        keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    drop_dead_nodes(model)


def set_metadata(model: onnx.ModelProto, key: str, value: Any) -> None:
    """Set ``metadata_props[key]`` (JSON for non-strings), replacing an earlier value."""
    text = value if isinstance(value, str) else json_dumps(value, separators=(",", ":"))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = text
            return
    model.metadata_props.add(key=key, value=text)


def get_metadata(model: onnx.ModelProto, key: str) -> str | None:
    return next((p.value for p in model.metadata_props if p.key == key), None)


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: fold constants, drop Identity/dead nodes, merge duplicate shape computations.

    onnxslim only folds what is constant for *every* input: the input dims stay symbolic (we never
    pass ``input_shapes``), so shape arithmetic on ``height``/``width`` survives. The checker below
    verifies it on every export.
    """
    import logging

    import onnxslim

    # onnxslim logs a summary table at INFO; the exporter reports node counts itself.
    logging.getLogger("onnxslim").setLevel(logging.WARNING)
    slimmed: onnx.ModelProto = onnxslim.slim(model)
    return slimmed


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Write ``model`` atomically: a crash mid-write leaves no ``model.onnx`` that later loads."""
    import onnx

    if model.ByteSize() >= 2**31 - 1:
        raise PvtDeployError(f"{path}: the graph is over 2 GiB, which one ONNX file cannot hold")
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


@dataclass
class BakedShape:
    """A constant shape operand whose values depend on the export size."""

    node: str
    op_type: str
    operand: int
    values: list[float]
    suspicious: list[float]

    def __str__(self) -> str:
        vals = self.values if len(self.values) <= 8 else [*self.values[:8], "..."]
        return (f"{self.op_type} {self.node!r} input {self.operand} = {vals} contains export-size value(s) "
                f"{self.suspicious}")


def export_size_values(height: int, width: int, *, anchors: int = NUM_ANCHORS,
                       pre_nms_topk: int | None = None) -> set[int]:
    """Every size a graph traced at ``height`` x ``width`` could bake in: per stride, the feature
    height and width, their product (token count) and that times the anchors (RetinaNet box count),
    and the total detection count after per-level top-k."""
    out: set[int] = {height, width}
    total = 0
    for s in SIZE_STRIDES:
        h, w = math.ceil(height / s), math.ceil(width / s)
        out |= {h, w, h * w, h * w * anchors}
        if s >= 8:
            total += min(h * w * anchors, pre_nms_topk) if pre_nms_topk else h * w * anchors
    out.add(total)
    return {v for v in out if v > 1}


def module_constants(module: nn.Module) -> set[int]:
    """Sizes a graph may legitimately hold as constants: every parameter/buffer dim (channels,
    classes, positional-embedding lengths) and every integer attribute of every submodule (head
    counts, head dims, pos-embed grids, top-k), plus :data:`CODE_CONSTANTS`."""
    values: set[int] = set(CODE_CONSTANTS)
    for t in (*module.parameters(), *module.buffers()):
        values.update(int(d) for d in t.shape)
    for m in module.modules():
        for v in vars(m).values():
            if isinstance(v, bool):
                continue
            if isinstance(v, int):
                values.add(v)
            elif isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                values.update(v)
    return values


def _is_power_of_two_scale(x: float) -> bool:
    if x <= 0:
        return False
    e = math.log2(x)
    return abs(e - round(e)) < 1e-6


def find_baked_shapes(model: onnx.ModelProto, height: int, width: int, *, allowed: Iterable[int] = (),
                      pre_nms_topk: int | None = None) -> tuple[list[BakedShape], set[int]]:
    """Constant shape operands that hold sizes derived from the export size ``height`` x ``width``.

    What is legitimately constant in a dynamic PVT graph: channel and head counts, head dims, class
    counts, anchors, the pretraining positional grid (56/28/14/7), the 7x7 pool, -1/0 placeholders,
    Slice bounds like 1 or INT64_MAX. What is not: anything computed from the input's H or W
    (:func:`export_size_values`). Values in both sets cannot be told apart and are returned as the
    second element ("unverifiable") — choose export sizes in tests so that it stays small.
    Constant Resize ``scales`` are flagged unless every factor is a power of two (x2 upsampling is
    size-independent; a factor such as 48/56 is a ratio baked from the export size).
    """
    forbidden = export_size_values(height, width, pre_nms_topk=pre_nms_topk)
    legit = set(allowed)
    unverifiable = forbidden & legit
    forbidden -= legit
    consts = constant_values(model)
    found: list[BakedShape] = []
    for n in model.graph.node:
        for k in SHAPE_OPERANDS.get(n.op_type, ()):
            if k >= len(n.input) or n.input[k] not in consts:
                continue
            arr = np.asarray(consts[n.input[k]]).reshape(-1)
            if arr.size == 0:
                continue
            if n.op_type in ("Resize", "Upsample") and arr.dtype.kind == "f":
                bad = [float(v) for v in arr[2:] if not _is_power_of_two_scale(float(v))]
            else:
                bad = sorted({int(v) for v in arr.tolist() if float(v).is_integer() and int(v) in forbidden})
            if bad:
                found.append(BakedShape(n.name or n.output[0], n.op_type, k, arr.tolist(), bad))
    return found, unverifiable


def count_layernorm_modules(module: nn.Module, example: Any) -> int:
    """How many ``nn.LayerNorm`` modules one forward pass runs (each should be one ONNX node)."""
    import torch
    from torch import nn

    called: set[int] = set()
    hooks = [m.register_forward_hook(lambda mod, *_: called.add(id(mod)))
             for m in module.modules() if isinstance(m, nn.LayerNorm)]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return len(called)


@dataclass
class GraphReport:
    opset: int
    nodes: int
    layernorm_nodes: int
    expected_layernorms: int | None
    decomposed_ops: dict[str, int]
    baked: list[BakedShape] = field(default_factory=list)
    unverifiable: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_graph(model: onnx.ModelProto, *, input_names: Sequence[str], output_names: Sequence[str],
                dynamic: bool, export_hw: tuple[int, int] | None = None,
                expected_layernorms: int | None = None, allowed: Iterable[int] = (),
                pre_nms_topk: int | None = None, full_check: bool = True) -> GraphReport:
    """Run every graph check; ``report.problems`` lists what failed (empty when the graph is good)."""
    import onnx

    counts = op_counts(model)
    report = GraphReport(opset=opset_of(model), nodes=node_count(model),
                         layernorm_nodes=counts.get("LayerNormalization", 0),
                         expected_layernorms=expected_layernorms,
                         decomposed_ops={op: counts[op] for op in DECOMPOSED_LAYERNORM_OPS if counts.get(op)})
    try:
        onnx.checker.check_model(model, full_check=full_check)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        report.problems.append(f"onnx.checker: {joined_lines(e)[:300]}")
    if report.opset < MIN_OPSET:
        report.problems.append(f"opset {report.opset} < {MIN_OPSET} (LayerNorm would be decomposed)")
    if report.decomposed_ops:
        report.problems.append(f"decomposed LayerNorm ops present: {report.decomposed_ops}")
    if expected_layernorms is not None and report.layernorm_nodes != expected_layernorms:
        report.problems.append(f"{report.layernorm_nodes} LayerNormalization nodes for {expected_layernorms} "
                               "nn.LayerNorm modules")
    ins, outs = io_spec(model)
    if [i["name"] for i in ins] != list(input_names) or [o["name"] for o in outs] != list(output_names):
        report.problems.append(f"graph I/O {[i['name'] for i in ins]} -> {[o['name'] for o in outs]}, expected "
                               f"{list(input_names)} -> {list(output_names)}")
    if dynamic and export_hw is not None:
        report.baked, unverifiable = find_baked_shapes(model, *export_hw, allowed=allowed,
                                                       pre_nms_topk=pre_nms_topk)
        report.unverifiable = sorted(unverifiable)
        if report.baked:
            report.problems.append(f"{len(report.baked)} shape constant(s) baked from the export size, "
                                   f"e.g. {report.baked[0]}")
    return report
