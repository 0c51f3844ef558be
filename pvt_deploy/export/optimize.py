"""Graph rewrites that make ONNX Runtime's CPU provider run PVT graphs faster.

``model.onnx`` stays the portable graph (standard ONNX ops only, what TensorRT parses). The rewrites
here produce a *derived* graph for ONNX Runtime on CPU, built when a session is created (see
:mod:`pvt_deploy.runtimes.ort_session`, which caches it beside the artifact). They use
``com.microsoft`` contrib ops that only ONNX Runtime implements, so their output is never written
as ``model.onnx``.

Why these rewrites (measured on the 2-core CPU; figures and commands in
docs/PERFORMANCE.md):

* **Spatial-reduction attention -> ``MultiHeadAttention``.** ONNX Runtime's own attention fusion
  looks for self-attention (Q, K, V projected from one tensor) and never matches PVT, whose K/V come
  from a spatially reduced sequence. Written out, SRA is ~12 nodes per block: Q reshape/transpose, a
  (B, M, 2, h, d) K/V reshape, a 5-D transpose, two gathers, a K transpose, two batched MatMuls, the
  scale, the softmax and the output transpose/reshape. ``com.microsoft.MultiHeadAttention`` takes
  Q (B, N, C), K and V (B, M, C) with M != N directly, so the transposes, the scale and the two
  MatMuls become one kernel that never materialises the transposed copies.
* **Wide 3x3 convolutions as Winograd F(4x4, 3x3).** A RetinaNet detector spends ~87% of its
  ONNX Runtime time in the FPN and head 3x3 convolutions (256 channels, at P3 80x80 for a 640 input),
  and MLAS runs them directly at the machine's FMA roof (~215 GFLOP/s on the AMD EPYC, ~325 on the
  Intel Xeon, as PyTorch does). Winograd F(4x4, 3x3) needs 4x fewer multiplies per output (36 per
  4x4 tile instead of 144), paid for by its transforms and a batched MatMul that runs below the roof;
  written with standard ONNX ops (a 6x6 stride-4 transform conv, one batched MatMul, a (16, 36)
  MatMul and ``DepthToSpace``) a 256->256 conv at 80x80 takes 20 ms instead of 36 on the EPYC, 18.5
  instead of 23.6 on the Xeon. Only wide convs on maps of at least 25 tiles (at the model's own input
  size) are rewritten; smaller ones pay more in node overhead than they save.
* **Token MLP as NCHW convolutions.** PVT v2's MLP is ``fc1 -> (B, N, 4C) -> transpose -> 3x3
  depthwise conv -> transpose -> GELU -> fc2``: two transposes of the *widest* tensor of the block.
  Rewritten, the (B, N, C) input is transposed once (4x smaller), fc1 and fc2 become 1x1 convs on the
  NCHW map (same weights), and the result is transposed back at width C. On the default graph these
  transposes are ~20% of a b0 classifier's time at batch 8.
* **Channels-last layout changes around convs.** Every change between tokens (B, N, C) and a conv's
  NCHW map (the MLP's above, the spatial-reduction and patch convs) is written as a 4-D NHWC
  transpose next to a free reshape instead of a 3-D ``Transpose(0,2,1)``; ONNX Runtime's NCHWc pass
  folds those into its ``ReorderInput``/``ReorderOutput`` (``channels_last``), so the copies vanish
  (``pvt_v2_b0-cls``: 35 transposes -> 0).
* **fc1's bias inside its MatMul.** ONNX Runtime fuses PVT v1's ``fc1`` bias ``Add`` into the GELU
  after it as ``BiasGelu``, ~1.6x the time of a plain ``Gelu`` on the block's widest tensor (17 % of
  ``pvt_small-cls``'s operator time). A column of ones joined onto fc1's input and the bias as an
  extra weight row put the bias in the GEMM instead (:func:`gelu_bias_in_matmul`).

The CPU INT8 graph of the classifiers (dynamic, weight-only INT8) is quantized from a graph with
the attention fused as above and two more rewrites (:func:`int8_cpu_layout`), applied *before*
quantization, so the export's parity gate measures the graph that runs:

* **Patch and spatial-reduction convs as MatMuls.** These convs have kernel = stride, so each output
  token is one patch of input tokens times a matrix. As convs they stayed FP32 (quantized as convs
  they made ``pvt_small-cls`` slower: ``int8_variants.py --flavours +patch-convs``, 1.98x PyTorch
  against 2.27x) and took ~11% of its INT8 time; as MatMuls they are quantized like the other linear
  layers. ``pvt_small`` has 16 of them.
* **Channels-last depthwise convs.** Written with 4-D NHWC transposes, PVT v2's depthwise MLP conv
  has its layout changes folded into ONNX Runtime's NCHWc reorders, so the two copies of the block's
  widest tensor disappear (the FP32 graph uses ``mlp_convs`` instead, which needs fc1/fc2 as float
  convs).
* **Attention as plain operators** (classifiers): the fused ``MultiHeadAttention`` written back as
  ``FusedMatMul`` (scale and K transpose folded in), ``Softmax`` and ``MatMul``
  (:func:`attention_as_matmuls`), which a single-threaded batch shard runs faster.

Quantized graphs get their own rewrites, each on the CPUs it is for (the export's parity gate runs
INT8 files with the same ones, :func:`pvt_deploy.export.onnx.ort_runner`):

* **AMX** (:func:`amx_conv_weights`): conv weights re-based to a zero point of -1, which moves
  ``QLinearConv`` from ONNX Runtime's VNNI symmetric kernels to its AMX GEMM.
* **x86 without VNNI** (:func:`unsigned_int8`): the int8 weights and activations of the integer
  products re-based to uint8 (zero point plus 128), so ONNX Runtime multiplies U8U8 (exact) instead
  of U8S8 or S8S8, whose pre-VNNI kernels saturate 16-bit pair sums. Bit-exact, like the AMX one.
* **Every CPU** (:func:`int8_gelu_bias`): fc1 as ``MatMulIntegerToFloat`` with its bias, so that
  ONNX Runtime does not fuse the bias into the GELU as ``BiasGelu`` (as :func:`gelu_bias_in_matmul`
  does for float graphs).
* **Every CPU** (``int8_channels_last_convs``, :func:`convs_channels_last`): the convs the static
  flavour keeps in float (patch and spatial-reduction convs between tokens) get their layout
  changes as 4-D NHWC transposes, which ONNX Runtime folds into its NCHWc reorders, as in float
  graphs: 17 convs of the ``pvt_small`` detector, whose 3-D transposes took ~8 ms of its ~280 ms
  INT8 run on the Xeon (one interleaved A/B, batch 1: 281.5 -> 271.7 ms). Bit-exact.
* **x86 without VNNI** (:func:`winograd_int8_convs`): there 8-bit products run at 1-2x the FP32
  rate (Zen 1 to Zen 3), short of Winograd's 4x fewer multiplies, so
  the wide 3x3 convs of the INT8 FPN/head run as float Winograd on the dequantized values, between
  the same 8-bit activations. Not bit-exact: an output on a rounding boundary moves by one step.

Every rewrite is checked by pattern (a node that does not match exactly is left alone, so the graph
is always valid) and ``tests/test_speed_optimize.py`` checks that outputs equal the original's (the
Winograd convs to ~1e-5 of the output's magnitude, the others to float summation order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pvt_deploy.export.graph import replace_nodes, toposort

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"


# --------------------------------------------------------------------------------------------------
# A small graph index
# --------------------------------------------------------------------------------------------------


class _Graph:
    """Producer/consumer maps and constant values of one ``GraphProto``, rebuilt after edits."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.values: dict[str, np.ndarray] = {}
        for n in self.graph.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.values[n.output[0]] = numpy_helper.to_array(a.t)
        self.producer: dict[str, Any] = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.graph.node:
            for x in n.input:
                self.consumers.setdefault(x, []).append(n)
        self.outputs = {o.name for o in self.graph.output}
        inputs = [i for i in self.graph.input if i.name not in self.inits]
        dims = inputs[0].type.tensor_type.shape.dim if len(inputs) == 1 else []
        #: the batch size of a static export (None when the batch is dynamic)
        self.static_batch: int | None = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
        self._names = {n.name for n in self.graph.node} | set(self.inits) | set(self.producer)

    def const(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.values:
            return self.values[name]
        if name in self.inits:
            value = numpy_helper.to_array(self.inits[name])
            self.values[name] = value
            return value
        return None

    def parent(self, node: Any, index: int, op: str | Sequence[str]) -> Any | None:
        """The producer of ``node.input[index]`` if it is an ``op`` node."""
        if index >= len(node.input):
            return None
        p = self.producer.get(node.input[index])
        ops = (op,) if isinstance(op, str) else tuple(op)
        return p if p is not None and p.op_type in ops else None

    def only_consumer(self, name: str) -> Any | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def data_consumer(self, name: str) -> Any | None:
        """The one consumer of ``name`` that reads its values (``Shape`` readers ignored)."""
        users = [u for u in self.consumers.get(name, []) if u.op_type != "Shape"]
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def unique(self, base: str) -> str:
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def add_init(self, base: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique(base)
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.inits[name] = self.graph.initializer[-1]
        self.values[name] = array
        return name


def attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _perm(node: Any) -> list[int] | None:
    if node is None or node.op_type != "Transpose":
        return None
    p = attr(node, "perm")
    return list(p) if p is not None else None


def _scalar(g: _Graph, name: str) -> float | None:
    v = g.const(name)
    if v is None or v.size != 1:
        return None
    return float(v.reshape(-1)[0])


def _concat_tail(g: _Graph, shape_name: str, count: int) -> list[int] | None:
    """The last ``count`` entries of a Reshape target that are constants (a constant shape, or a
    Concat whose last inputs are constants), e.g. (heads, head_dim) of a ``(b, n, h, d)`` reshape."""
    value = g.const(shape_name)
    if value is not None:
        v = [int(x) for x in value.reshape(-1)]
        return v[-count:] if len(v) >= count else None
    cat = g.producer.get(shape_name)
    if cat is None or cat.op_type != "Concat" or len(cat.input) < count:
        return None
    out: list[int] = []
    for name in cat.input[-count:]:
        c = g.const(name)
        if c is None or c.size != 1:
            return None
        out.append(int(c.reshape(-1)[0]))
    return out


def _ensure_ms_opset(model: onnx.ModelProto) -> None:
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.add(domain=MS_DOMAIN, version=1)


# --------------------------------------------------------------------------------------------------
# Spatial-reduction attention -> com.microsoft.MultiHeadAttention
# --------------------------------------------------------------------------------------------------


@dataclass
class _SRA:
    query: str  # (B, N, C) projected queries (bias added); 2-D (B*N, C) in some static exports
    kv: str  # (B, M, 2C) projected keys|values (or 2-D, like the query)
    out: str  # (B, N, C) attention output before ``proj`` (or 2-D, like the query)
    heads: int
    head_dim: int
    scale: float
    name: str
    query_shape: str  # the targets of the exported (b, n, h, d), (b, m, 2, h, d) and output reshapes
    kv_shape: str
    out_shape: str


def _match_sra(g: _Graph, softmax: Any) -> _SRA | None:
    """Recognise the exported ``SpatialReductionAttention.forward`` around one Softmax.

    q: ``Reshape(q, (b, n, h, d)) -> Transpose(0,2,1,3)``; k, v: ``Reshape(kv, (b, -1, 2, h, d)) ->
    Transpose(2,0,3,1,4) -> Gather(0 | 1, axis 0)``; scores ``MatMul(q, Transpose(k, 0,1,3,2)) * s``;
    output ``MatMul(softmax, v) -> Transpose(0,2,1,3) -> Reshape(b, n, c)``.
    """
    if attr(softmax, "axis", -1) not in (-1, 3):
        return None
    scaled = g.parent(softmax, 0, ("Mul", "Div"))
    if scaled is None:
        return None
    scores, scale = None, None
    for i in (0, 1):
        mm = g.parent(scaled, i, "MatMul")
        s = _scalar(g, scaled.input[1 - i])
        if mm is not None and s is not None and (scaled.op_type == "Mul" or i == 0):
            scores, scale = mm, (s if scaled.op_type == "Mul" else 1.0 / s)
            break
    if scores is None or scale is None:
        return None
    q_t = g.parent(scores, 0, "Transpose")
    k_t = g.parent(scores, 1, "Transpose")
    if _perm(q_t) != [0, 2, 1, 3] or _perm(k_t) != [0, 1, 3, 2]:
        return None
    q_r = g.parent(q_t, 0, "Reshape")
    k_g = g.parent(k_t, 0, "Gather")
    if q_r is None or k_g is None:
        return None
    av = g.only_consumer(softmax.output[0])
    if av is None or av.op_type != "MatMul" or av.input[0] != softmax.output[0]:
        return None
    v_g = g.parent(av, 1, "Gather")
    if v_g is None or v_g.input[0] != k_g.input[0]:
        return None
    if attr(k_g, "axis", 0) != 0 or attr(v_g, "axis", 0) != 0:
        return None
    if _scalar(g, k_g.input[1]) != 0 or _scalar(g, v_g.input[1]) != 1:
        return None
    kv_t = g.parent(k_g, 0, "Transpose")
    if _perm(kv_t) != [2, 0, 3, 1, 4]:
        return None
    kv_r = g.parent(kv_t, 0, "Reshape")
    if kv_r is None:
        return None
    q_hd = _concat_tail(g, q_r.input[1], 2)
    kv_hd = _concat_tail(g, kv_r.input[1], 3)
    if q_hd is None or kv_hd is None or kv_hd[0] != 2 or kv_hd[1:] != q_hd:
        return None
    heads, head_dim = q_hd
    o_t = g.only_consumer(av.output[0])
    if o_t is None or _perm(o_t) != [0, 2, 1, 3]:
        return None
    o_r = g.only_consumer(o_t.output[0])
    if o_r is None or o_r.op_type != "Reshape":
        return None
    if not _is_token_shape(g, o_r.input[1], q_r.input[0], heads * head_dim):
        return None
    # Everything between must be private to this attention (no other reader of the intermediates).
    for node in (scores, scaled, q_t, k_t):
        if node is None or g.only_consumer(node.output[0]) is None:
            return None
    if g.only_consumer(q_r.output[0]) is None:
        return None
    return _SRA(query=q_r.input[0], kv=kv_r.input[0], out=o_r.output[0], heads=heads, head_dim=head_dim,
                scale=scale, name=softmax.name or softmax.output[0], query_shape=q_r.input[1],
                kv_shape=kv_r.input[1], out_shape=o_r.input[1])


def _is_token_shape(g: _Graph, shape_name: str, query: str, width: int) -> bool:
    """Whether ``shape_name`` is (b, n, ``width``): a Concat/constant ending in ``width`` (or -1), or
    ``Shape`` of the query tensor or of the tokens the query was projected from (onnxslim merges the
    output reshape's target with that shape when it sees they are equal)."""
    tail = _concat_tail(g, shape_name, 1)
    if tail is not None:
        return tail[0] in (width, -1)
    shape = g.producer.get(shape_name)
    if shape is None or shape.op_type != "Shape" or attr(shape, "start") or attr(shape, "end"):
        return False
    sources = {query}
    node = g.producer.get(query)
    if node is not None and node.op_type == "Add":
        node = next((g.producer[x] for x in node.input if x in g.producer and g.producer[x].op_type == "MatMul"),
                    None)
    if node is not None and node.op_type == "MatMul":
        weight = g.const(node.input[1])
        if weight is not None and weight.ndim == 2 and weight.shape[0] == weight.shape[1] == width:
            sources.add(node.input[0])
    return shape.input[0] in sources


def fuse_sra_attention(model: onnx.ModelProto) -> int:
    """Replace every spatial-reduction attention by one ``MultiHeadAttention``; return how many.

    K and V are split from the fused ``kv`` projection with one ``Split`` (on the reduced sequence,
    so the copy is small); Q feeds the op untransposed. The op's ``scale`` is the graph's own
    constant, so the rewrite is exact up to float summation order.
    """
    from onnx import helper

    g = _Graph(model)
    found = [m for n in list(g.graph.node) if n.op_type == "Softmax" and (m := _match_sra(g, n)) is not None]
    if not found:
        return 0
    ranks = _ranks(model)
    new_nodes: dict[str, list[Any]] = {}
    fused = 0
    for m in found:
        width = m.heads * m.head_dim
        # MultiHeadAttention takes and gives (B, S, C). A static export may carry the projections as
        # 2-D Gemms, (B*S, C): view those as 3-D with the leading dims of the exported head reshapes
        # (constants there), and give the output the shape the exported output reshape gave.
        query, kv, out = m.query, m.kv, m.out
        out_dims = _ints(g, m.out_shape)
        if ranks.get(m.out) != 3 and (out_dims is None or 0 in out_dims[2:]):
            continue  # checked first: a block skipped here leaves no half-built views behind
        views: list[Any] = []
        if ranks.get(query) != 3 or ranks.get(kv) != 3:
            q_dims, kv_dims = _ints(g, m.query_shape), _ints(g, m.kv_shape)
            if (q_dims is None or kv_dims is None or len(q_dims) != 4 or len(kv_dims) != 5
                    or not (_leading_dims(q_dims) and _leading_dims(kv_dims))):
                continue
            query, kv = g.unique(f"{m.name}/query_3d"), g.unique(f"{m.name}/kv_3d")
            q3 = g.add_init(f"{m.name}/query_3d_shape", np.array([*q_dims[:2], width], dtype=np.int64))
            kv3 = g.add_init(f"{m.name}/kv_3d_shape", np.array([*kv_dims[:2], 2 * width], dtype=np.int64))
            views += [helper.make_node("Reshape", [m.query, q3], [query], name=g.unique(f"{m.name}/query_3d")),
                      helper.make_node("Reshape", [m.kv, kv3], [kv], name=g.unique(f"{m.name}/kv_3d"))]
        tail: list[Any] = []
        if ranks.get(m.out) != 3:
            out = g.unique(f"{m.name}/out_3d")
            tail.append(helper.make_node("Reshape", [out, m.out_shape], [m.out], name=g.unique(f"{m.name}/out")))
        k, v = g.unique(f"{m.name}/k"), g.unique(f"{m.name}/v")
        split_sizes = g.add_init(f"{m.name}/kv_split", np.array([width, width], dtype=np.int64))
        split = helper.make_node("Split", [kv, split_sizes], [k, v], name=g.unique(f"{m.name}/kv_Split"), axis=-1)
        mha = helper.make_node("MultiHeadAttention", [query, k, v], [out], name=g.unique(f"{m.name}/MHA"),
                               domain=MS_DOMAIN, num_heads=m.heads, scale=float(m.scale))
        new_nodes[m.out] = [*views, split, mha, *tail]
        fused += 1
    if fused:
        _ensure_ms_opset(model)
        # Rewire: the old output Reshape is removed (its output name is now produced by the new nodes).
        replace_nodes(model, new_nodes)
    return fused



def attention_as_matmuls(model: onnx.ModelProto) -> int:
    """Write each ``MultiHeadAttention`` (Q, K, V as (B, S, C), from :func:`fuse_sra_attention`) back
    as plain operators; return how many: the heads split by a reshape and a transpose (none for one
    head), ``FusedMatMul`` (Q times K transposed, times the scale), ``Softmax`` and ``MatMul``, then
    the heads joined back. The same arithmetic to float summation order. On one core ONNX Runtime's
    CPU ``MultiHeadAttention`` kernel runs PVT's attention shapes slower than these operators (a
    single-threaded shard of ``pvt_v2_b0-cls``: stage 1's attention 1.56 -> 1.21 ms at batch 4);
    used by the classifiers' dynamic INT8 layout (:func:`int8_cpu_layout`).
    """
    from onnx import helper

    g = _Graph(model)
    found = [n for n in g.graph.node if n.op_type == "MultiHeadAttention" and n.domain == MS_DOMAIN
             and len(n.input) == 3 and all(n.input) and attr(n, "num_heads") and attr(n, "scale") is not None]
    if not found:
        return 0
    new_nodes: dict[str, list[Any]] = {}
    for n in found:
        heads, base, out = int(attr(n, "num_heads")), n.name or n.output[0], n.output[0]
        q, k, v = n.input
        nodes: list[Any] = []
        if heads > 1:  # (B, S, C) -> (B, heads, S, C / heads)
            split = g.add_init(f"{base}/heads_shape", np.array([0, 0, heads, -1], dtype=np.int64))
            per_head = []
            for role, tensor in (("q", q), ("k", k), ("v", v)):
                four, heads_first = g.unique(f"{base}/{role}_4d"), g.unique(f"{base}/{role}_heads")
                nodes += [helper.make_node("Reshape", [tensor, split], [four], name=g.unique(f"{base}/{role}_Reshape")),
                          helper.make_node("Transpose", [four], [heads_first], name=g.unique(f"{base}/{role}_Transpose"),
                                           perm=[0, 2, 1, 3])]
                per_head.append(heads_first)
            q, k, v = per_head
        scores, probs = g.unique(f"{base}/scores"), g.unique(f"{base}/probs")
        nodes += [helper.make_node("FusedMatMul", [q, k], [scores], name=g.unique(f"{base}/QK"), domain=MS_DOMAIN,
                                   alpha=float(attr(n, "scale")), transA=0, transB=1),
                  helper.make_node("Softmax", [scores], [probs], name=g.unique(f"{base}/Softmax"), axis=-1)]
        if heads == 1:
            nodes.append(helper.make_node("MatMul", [probs, v], [out], name=g.unique(f"{base}/AV")))
        else:  # (B, heads, S, C / heads) -> (B, S, C)
            merged = g.add_init(f"{base}/tokens_shape", np.array([0, 0, -1], dtype=np.int64))
            av, tokens = g.unique(f"{base}/av"), g.unique(f"{base}/av_tokens")
            nodes += [helper.make_node("MatMul", [probs, v], [av], name=g.unique(f"{base}/AV")),
                      helper.make_node("Transpose", [av], [tokens], name=g.unique(f"{base}/av_Transpose"),
                                       perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [tokens, merged], [out], name=g.unique(f"{base}/av_Reshape"))]
        new_nodes[out] = nodes
    replace_nodes(model, new_nodes)
    return len(found)

def _shape_probe(model: onnx.ModelProto, max_values: int = 1024) -> onnx.ModelProto:
    """A copy of ``model`` for ONNX shape inference: nodes, inputs, outputs and small constants as
    they are, every larger initializer (the weights) reduced to its type and dims, which is all
    inference reads of it. Inferring on it takes milliseconds; on a full copy it costs a
    serialisation of the weights (~1 s for the pvt_small detector)."""
    import math

    import onnx

    probe = onnx.ModelProto(ir_version=model.ir_version, metadata_props=model.metadata_props,
                            opset_import=model.opset_import, functions=model.functions)
    graph = probe.graph
    graph.name = model.graph.name
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    for init in model.graph.initializer:
        if math.prod(init.dims) <= max_values:
            graph.initializer.append(init)
        else:
            graph.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims)
    return probe


def _leading_dims(dims: Sequence[int]) -> bool:
    """Whether a reshape target's (batch, sequence) entries can be reused as they are: sizes, or one -1."""
    return all(d > 0 or d == -1 for d in dims[:2]) and list(dims[:2]).count(-1) <= 1


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor ONNX shape inference can tell (symbolic dims are fine)."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(_shape_probe(model))
    except Exception as e:  # noqa: BLE001 - unknown ranks only make the callers more careful
        log.debug("shape inference failed (%s)", e)
        return {}
    return {v.name: len(v.type.tensor_type.shape.dim)
            for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
            if v.type.tensor_type.HasField("shape")}


# --------------------------------------------------------------------------------------------------
# Convolutions between token sequences
# --------------------------------------------------------------------------------------------------


@dataclass
class _TokenConv:
    """A conv between token sequences: ``Transpose(0,2,1) -> Reshape(b, C, H, W) -> Conv ->
    Reshape(b, K, -1) -> Transpose(0,2,1)`` (PVT's spatial-reduction convs, v1's patch embeddings of
    stages 2-4, v2's depthwise MLP conv)."""

    conv: Any
    weight: np.ndarray
    tokens: str  # (B, N, C) input tokens
    map_in: str  # the (B, C, H, W) map the conv reads
    height: str | int  # H and W of that map: 1-element int64 tensors, or numbers in a static export
    width: str | int
    out: str  # (B, M, K) output tokens


def _dim(g: _Graph, dim: str | int, base: str) -> str:
    """A 1-element int64 tensor holding a map dimension (a new constant for a static export's)."""
    return dim if isinstance(dim, str) else g.add_init(base, np.array([dim], dtype=np.int64))


def _ints(g: _Graph, name: str) -> list[int] | None:
    value = g.const(name) if name else None
    return None if value is None else [int(x) for x in value.reshape(-1)]


def _flattens(g: _Graph, shape_name: str, conv_out: str, channels: int) -> bool:
    """Whether a Reshape target turns the conv output (B, K, H', W') into (B, K, H'*W'): a constant
    (0, K | 0, -1), ``Concat(b, K, -1)`` or ``Concat(Shape(conv_out)[0:2], -1)``."""
    value = _ints(g, shape_name)
    if value is not None:
        return (len(value) == 3 and value[0] in (0, g.static_batch) and value[1] in (0, channels)
                and value[2] == -1)
    cat = g.producer.get(shape_name)
    if cat is None or cat.op_type != "Concat" or _concat_tail(g, shape_name, 1) != [-1]:
        return False
    if len(cat.input) == 3:
        return _concat_tail(g, shape_name, 2) == [channels, -1]
    head = g.producer.get(cat.input[0]) if len(cat.input) == 2 else None
    if head is None:
        return False
    end = attr(head, "end")  # Shape(conv_out, end=2), or Shape(conv_out) -> Slice [0:2]
    if head.op_type == "Slice" and len(head.input) in (3, 4) and g.producer.get(head.input[0]) is not None:
        axes = _ints(g, head.input[3]) if len(head.input) == 4 else [0]
        if (_ints(g, head.input[1]), _ints(g, head.input[2]), axes) != ([0], [2], [0]):
            return False
        head = g.producer[head.input[0]]
        end = 2 if attr(head, "end") is None else None
    return head.op_type == "Shape" and head.input[0] == conv_out and not attr(head, "start") and end == 2


def _conv_weight(g: _Graph, conv: Any) -> np.ndarray | None:
    weight = g.const(conv.input[1]) if len(conv.input) > 1 else None
    if weight is None or weight.ndim != 4 or attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    return weight


def _tokens_in(g: _Graph, conv: Any, weight: np.ndarray) -> tuple[str, str, str | int, str | int] | None:
    """``Reshape(Transpose(tokens, (0,2,1)), (b, C, H, W))`` read by ``conv`` alone: (tokens, the map's
    name, H, W)."""
    r_in = g.parent(conv, 0, "Reshape")
    t_in = g.parent(r_in, 0, "Transpose") if r_in is not None else None
    if r_in is None or t_in is None or _perm(t_in) != [0, 2, 1] or g.only_consumer(r_in.output[0]) is None:
        return None
    height: str | int
    width: str | int
    target = _ints(g, r_in.input[1])
    if target is not None:  # a static export: (b, C, H, W) is one constant
        if len(target) != 4 or target[0] != g.static_batch or min(target[1:]) < 1:
            return None
        channels: list[int] | None = target[1:2]
        height, width = target[2], target[3]
    else:
        cat = g.producer.get(r_in.input[1])
        if cat is None or cat.op_type != "Concat" or len(cat.input) != 4:
            return None
        channels = _ints(g, cat.input[1])  # read from the tokens' shape in the first block of a stage
        height, width = cat.input[2], cat.input[3]
    if channels is not None and channels != [weight.shape[1] * attr(conv, "group", 1)]:
        return None
    return t_in.input[0], r_in.output[0], height, width


def _tokens_out(g: _Graph, conv: Any, weight: np.ndarray) -> str | None:
    """The (B, M, K) tokens ``Transpose(Reshape(conv, (b, K, -1)), (0,2,1))`` that ``conv``'s output
    becomes (its only reader besides ``Shape`` nodes)."""
    r_out = g.data_consumer(conv.output[0])
    if r_out is None or r_out.op_type != "Reshape" or not _flattens(g, r_out.input[1], conv.output[0], weight.shape[0]):
        return None
    t_out = g.data_consumer(r_out.output[0])
    if t_out is None or _perm(t_out) != [0, 2, 1]:
        return None
    return str(t_out.output[0])


def _token_conv(g: _Graph, conv: Any) -> _TokenConv | None:
    weight = _conv_weight(g, conv)
    found_in = _tokens_in(g, conv, weight) if weight is not None else None
    out = _tokens_out(g, conv, weight) if weight is not None and found_in is not None else None
    if weight is None or found_in is None or out is None:
        return None
    tokens, map_in, height, width = found_in
    return _TokenConv(conv=conv, weight=weight, tokens=tokens, map_in=map_in, height=height, width=width, out=out)


# --------------------------------------------------------------------------------------------------
# PVT v2 token MLP -> NCHW 1x1 convolutions
# --------------------------------------------------------------------------------------------------


@dataclass
class _ConvMlp:
    x: str  # (B, N, C) MLP input
    w1: np.ndarray  # (C, 4C)
    b1: np.ndarray
    w2: np.ndarray  # (4C, C)
    b2: np.ndarray
    dwconv: Any  # the depthwise Conv node (reused as is)
    height: str | int  # H and W of the map, as in _TokenConv
    width: str | int
    out: str  # (B, N, C) MLP output (after fc2's bias)
    name: str
    relu: bool = False  # a ReLU between fc1 and the depthwise conv (linear-SRA variants)


def _linear(g: _Graph, out_name: str) -> tuple[str, np.ndarray, np.ndarray, list[Any]] | None:
    """``Add(MatMul(x, W), b)`` (either Add input order) producing ``out_name``: (x, W, b, nodes); or a
    bare ``MatMul(x, W)`` (a layer whose bias is zero: the export drops the Add of zeros, as in a
    randomly initialised model), with ``b`` zeros."""
    node = g.producer.get(out_name)
    if node is not None and node.op_type == "MatMul":
        weight = g.const(node.input[1])
        if weight is None or weight.ndim != 2:
            return None
        return node.input[0], weight, np.zeros(weight.shape[1], weight.dtype), [node]
    biased = _biased_matmul(g, node) if node is not None else None
    if biased is None:
        return None
    mm, _, bias = biased
    weight = g.const(mm.input[1])
    if weight is None or weight.ndim != 2 or bias.shape != (weight.shape[1],):
        return None
    if g.only_consumer(mm.output[0]) is None:
        return None
    return mm.input[0], weight, bias, [mm, node]


def _biased_matmul(g: _Graph, add: Any) -> tuple[Any, str, np.ndarray] | None:
    """``add`` as ``Add(MatMul(...), constant)``, either input order: (the MatMul, the constant's name and
    value)."""
    if add.op_type != "Add":
        return None
    for i in (0, 1):
        mm, bias = g.parent(add, i, "MatMul"), g.const(add.input[1 - i])
        if mm is not None and bias is not None:
            return mm, str(add.input[1 - i]), bias
    return None


def _gelu_inputs(g: _Graph) -> list[str]:
    """The input of every exact GELU in the graph (:func:`_gelu_input`), once each."""
    found = (_gelu_input(g, n.output[0]) for n in g.graph.node if n.op_type in ("Gelu", "Mul"))
    return list(dict.fromkeys(x for x in found if x is not None))


def _gelu_input(g: _Graph, out_name: str) -> str | None:
    """The input of an exact (erf) GELU whose output is ``out_name``: a ``Gelu`` node, or the exported
    ``x * 0.5 * (1 + erf(x / sqrt(2)))`` in either multiplication order."""
    node = g.producer.get(out_name)
    if node is None:
        return None
    if node.op_type == "Gelu" and attr(node, "approximate", "none") in ("none", b"none"):
        return str(node.input[0])
    if node.op_type != "Mul":
        return None
    half = next((i for i in (0, 1) if _scalar(g, node.input[i]) == 0.5), None)
    if half is None:
        return None
    inner = g.producer.get(node.input[1 - half])
    if inner is None or inner.op_type != "Mul":
        return None
    for i in (0, 1):
        x, one_plus = inner.input[i], g.producer.get(inner.input[1 - i])
        if one_plus is None or one_plus.op_type != "Add":
            continue
        j = next((k for k in (0, 1) if _scalar(g, one_plus.input[k]) == 1.0), None)
        if j is None:
            continue
        erf = g.producer.get(one_plus.input[1 - j])
        if erf is None or erf.op_type != "Erf":
            continue
        div = g.producer.get(erf.input[0])
        if div is None or div.input[0] != x:
            continue
        s = _scalar(g, div.input[1])
        if s is None:
            continue
        if (div.op_type == "Div" and abs(s - 2 ** 0.5) < 1e-5) or (div.op_type == "Mul" and abs(s - 2 ** -0.5) < 1e-5):
            return str(x)
    return None


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Replace every exported exact GELU (``x * 0.5 * (1 + erf(x / sqrt(2)))``, five nodes) with one
    ``com.microsoft`` ``Gelu``; return how many.

    ONNX Runtime fuses the pattern itself when ``x`` has no other readers. A quantized graph can hide
    it: ONNX Runtime gives each reader of a ``DequantizeLinear`` its own copy, so a GELU after an INT8
    conv would run as five passes over the widest tensor of the block. Same function, one kernel.
    """
    from onnx import helper

    g = _Graph(model)
    found = [(n, x) for n in list(g.graph.node) if n.op_type == "Mul" and (x := _gelu_input(g, n.output[0])) is not None]
    if not found:
        return 0
    _ensure_ms_opset(model)
    replace_nodes(model, {n.output[0]: [helper.make_node("Gelu", [x], [n.output[0]], domain=MS_DOMAIN,
                                                         name=g.unique(f"{n.name or n.output[0]}/Gelu"))]
                          for n, x in found})
    return len(found)


def _match_conv_mlp(g: _Graph, dw: Any) -> _ConvMlp | None:
    """``fc1 -> Transpose(0,2,1) -> Reshape(b, 4C, H, W) -> depthwise Conv -> Reshape(b, 4C, N) ->
    Transpose(0,2,1) -> GELU -> fc2`` around the depthwise conv ``dw``."""
    tc = _token_conv(g, dw)
    if tc is None or tc.weight.shape[1] != 1 or attr(dw, "group", 1) != tc.weight.shape[0]:
        return None
    channels = tc.weight.shape[0]
    relu = g.producer.get(tc.tokens)  # pvt_v2_*_li: fc1 -> ReLU -> dwconv
    if relu is not None and relu.op_type != "Relu":
        relu = None
    if relu is not None and g.data_consumer(relu.input[0]) is None:
        return None
    fc1 = _linear(g, relu.input[0] if relu is not None else tc.tokens)
    if fc1 is None or fc1[1].shape[1] != channels:
        return None
    t_out = g.producer[tc.out]
    # GELU: find its output by walking forward to fc2's MatMul.
    fc2_mm = None
    frontier = [t_out.output[0]]
    seen: set[str] = set()
    while frontier:
        name = frontier.pop()
        for user in g.consumers.get(name, []):
            if user.op_type == "MatMul" and user.input[0] == name and g.const(user.input[1]) is not None:
                fc2_mm = user
            elif user.op_type in ("Div", "Mul", "Erf", "Add", "Gelu") and user.output[0] not in seen:
                seen.add(user.output[0])
                frontier.append(user.output[0])
    if fc2_mm is None or _gelu_input(g, fc2_mm.input[0]) != t_out.output[0]:
        return None
    # fc2's bias Add, or (a zero bias dropped) the MatMul alone: its output then goes to the residual Add
    out = fc2_mm.output[0]
    after = g.only_consumer(out)
    if after is not None and (biased := _biased_matmul(g, after)) is not None and biased[0].output[0] == out:
        out = after.output[0]
    fc2 = _linear(g, out)
    if fc2 is None or fc2[1].shape[0] != channels or fc2[0] != fc2_mm.input[0]:
        return None
    x, w1, b1, _ = fc1
    if fc2[1].shape[1] != w1.shape[0]:
        return None
    # Intermediates must not be read elsewhere (the fc1 output also feeds a Shape node for the batch
    # size of the reshape; that reader is rewired to the new conv output, which has the same batch).
    return _ConvMlp(x=x, w1=w1, b1=b1, w2=fc2[1], b2=fc2[2], dwconv=dw, height=tc.height, width=tc.width,
                    out=out, name=dw.name or dw.output[0], relu=relu is not None)


def _tokens_to_nchw(g: _Graph, p: str, tokens: str, height: str | int, width: str | int, channels: int,
                    map_out: str) -> list[Any]:
    """Nodes that write (B, H*W, C) ``tokens`` as the NCHW map ``map_out``: a free reshape to NHWC and a 4-D
    transpose, which ONNX Runtime's NCHWc pass folds into its ``ReorderInput`` (see the module docstring)."""
    from onnx import helper

    shape, nhwc = g.unique(f"{p}/nhwc_shape"), g.unique(f"{p}/nhwc_in")
    keep_b = g.add_init(f"{p}/keep_b", np.array([0], dtype=np.int64))
    c = g.add_init(f"{p}/channels", np.array([channels], dtype=np.int64))
    return [
        helper.make_node("Concat", [keep_b, _dim(g, height, f"{p}/height"), _dim(g, width, f"{p}/width"), c],
                         [shape], name=g.unique(f"{p}/nhwc_Concat"), axis=0),
        helper.make_node("Reshape", [tokens, shape], [nhwc], name=g.unique(f"{p}/nhwc_Reshape")),
        helper.make_node("Transpose", [nhwc], [map_out], name=g.unique(f"{p}/to_nchw"), perm=[0, 3, 1, 2]),
    ]


def _nchw_to_tokens(g: _Graph, p: str, map_in: str, channels: int, tokens_out: str) -> list[Any]:
    """Nodes that write the NCHW map ``map_in`` of ``channels`` as (B, H*W, C) ``tokens_out``: a 4-D
    transpose to NHWC (folded into ONNX Runtime's ``ReorderOutput``) and a free reshape."""
    from onnx import helper

    nhwc = g.unique(f"{p}/nhwc_out")
    flat = g.add_init(f"{p}/tokens_shape", np.array([0, -1, channels], dtype=np.int64))
    return [
        helper.make_node("Transpose", [map_in], [nhwc], name=g.unique(f"{p}/to_nhwc"), perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [nhwc, flat], [tokens_out], name=g.unique(f"{p}/tokens_Reshape")),
    ]


def mlp_as_convs(model: onnx.ModelProto) -> int:
    """Run every PVT v2 token MLP on the NCHW map with 1x1 convs (see the module docstring).

    Weights are the same numbers transposed (``W1^T`` as a ``(4C, C, 1, 1)`` kernel), so the result
    equals the original up to float summation order. The map is entered and left with 4-D NHWC
    transposes, which ONNX Runtime folds into its NCHWc reorders (as :func:`convs_channels_last`).
    """
    from onnx import helper

    g = _Graph(model)
    found = [m for n in list(g.graph.node) if n.op_type == "Conv" and (m := _match_conv_mlp(g, n)) is not None]
    if not found:
        return 0
    _ensure_ms_opset(model)
    replace: dict[str, list[Any]] = {}  # output name of the node to replace -> new nodes
    for m in found:
        p = m.name
        channels = m.w1.shape[0]
        x_map = g.unique(f"{p}/x_map")
        h1, dw_out, act = g.unique(f"{p}/fc1_conv"), g.unique(f"{p}/dw_out"), g.unique(f"{p}/gelu")
        h2 = g.unique(f"{p}/fc2_conv")
        w1 = g.add_init(f"{p}/fc1_w", np.ascontiguousarray(m.w1.T)[:, :, None, None].astype(np.float32))
        b1 = g.add_init(f"{p}/fc1_b", m.b1.astype(np.float32))
        w2 = g.add_init(f"{p}/fc2_w", np.ascontiguousarray(m.w2.T)[:, :, None, None].astype(np.float32))
        b2 = g.add_init(f"{p}/fc2_b", m.b2.astype(np.float32))
        dw = m.dwconv
        dw_in = g.unique(f"{p}/fc1_relu") if m.relu else h1
        new_dw = helper.make_node("Conv", [dw_in, *dw.input[1:]], [dw_out], name=g.unique(f"{p}/dw"))
        new_dw.attribute.extend(dw.attribute)
        relu = [helper.make_node("Relu", [h1], [dw_in], name=g.unique(f"{p}/Relu"))] if m.relu else []
        nodes = [
            *_tokens_to_nchw(g, p, m.x, m.height, m.width, channels, x_map),
            helper.make_node("Conv", [x_map, w1, b1], [h1], name=g.unique(f"{p}/fc1"), kernel_shape=[1, 1]),
            *relu,
            new_dw,
            helper.make_node("Gelu", [dw_out], [act], name=g.unique(f"{p}/Gelu"), domain=MS_DOMAIN),
            helper.make_node("Conv", [act, w2, b2], [h2], name=g.unique(f"{p}/fc2"), kernel_shape=[1, 1]),
            *_nchw_to_tokens(g, p, h2, channels, m.out),
        ]
        replace[m.out] = nodes
    replace_nodes(model, replace)
    return len(found)


def gelu_bias_in_matmul(model: onnx.ModelProto) -> int:
    """Add the bias of every linear layer that feeds an exact GELU (PVT v1's fc1) inside its MatMul: a
    column of ones joined onto the input and a row ``b`` under ``W``, so ``[x, 1] @ [W; b]`` is the
    biased output; return how many.

    ONNX Runtime otherwise fuses that ``Add`` into the GELU as ``BiasGelu``, which on the CPU runs
    ~1.6x slower than a plain ``Gelu`` on the MLP's widest tensor, while the extra column costs the
    GEMM next to nothing and the join one pass over the (4-8x narrower) input. Same sums, the bias
    added inside the dot product instead of after it. The ones are shaped from the input, so any rank
    and size run.
    """
    from onnx import helper

    g = _Graph(model)
    found = {out: fc for out in _gelu_inputs(g)
             if (fc := _linear(g, out)) is not None and len(fc[3]) == 2}  # a bare MatMul (zero bias): no Add to save
    replace: dict[str, list[Any]] = {}
    for out, (x, weight, bias, (mm, _add)) in found.items():
        p = mm.name or out
        lead, shape, ones, joined = (g.unique(f"{p}/{s}") for s in ("lead_shape", "ones_shape", "ones", "with_ones"))
        one_col = g.add_init(f"{p}/one_col", np.array([1], dtype=np.int64))
        one = g.add_init(f"{p}/one", np.array(1.0, dtype=weight.dtype))
        w = g.add_init(f"{p}/weight_bias", np.concatenate([weight, bias[None].astype(weight.dtype)], 0))
        replace[out] = [
            helper.make_node("Shape", [x], [lead], name=g.unique(f"{p}/Shape"), end=-1),
            helper.make_node("Concat", [lead, one_col], [shape], name=g.unique(f"{p}/ones_Concat"), axis=0),
            helper.make_node("Expand", [one, shape], [ones], name=g.unique(f"{p}/Expand")),
            helper.make_node("Concat", [x, ones], [joined], name=g.unique(f"{p}/Concat"), axis=-1),
            helper.make_node("MatMul", [joined, w], [out], name=g.unique(f"{p}/MatMul")),
        ]
    if replace:
        replace_nodes(model, replace)
    return len(found)


def convs_channels_last(model: onnx.ModelProto) -> int:
    """Write the layout changes between tokens and every conv's NCHW map as 4-D NHWC transposes;
    return how many convs changed (see the module docstring).

    A conv reading ``Reshape(Transpose(tokens, (0,2,1)), (b, C, H, W))`` reads
    ``Transpose(Reshape(tokens, (b, H, W, C)), (0,3,1,2))`` instead, and one written to tokens as
    ``Transpose(Reshape(y, (b, K, -1)), (0,2,1))`` as ``Reshape(Transpose(y, (0,2,3,1)), (b, -1, K))``.
    ONNX Runtime's NCHWc pass folds the 4-D transposes into its ``ReorderInput``/``ReorderOutput``
    (``channels_last``). The same numbers move: the result is identical. (A ``Shape`` reader of a patch
    conv's output, for the stage's H and W, still costs an NCHW ``ReorderOutput``: ONNX Runtime moves a
    ``Shape`` of the NHWC transpose back onto the conv.)
    """
    from pvt_deploy.export.graph import toposort

    g = _Graph(model)
    replace: dict[str, list[Any]] = {}
    changed = 0
    for conv in [n for n in g.graph.node if n.op_type == "Conv"]:
        weight = _conv_weight(g, conv)
        if weight is None:
            continue
        found_in, out = _tokens_in(g, conv, weight), _tokens_out(g, conv, weight)
        p = conv.name or conv.output[0]
        if found_in is not None:
            tokens, map_in, height, width = found_in
            replace[map_in] = _tokens_to_nchw(g, p, tokens, height, width, weight.shape[1] * attr(conv, "group", 1),
                                              map_in)
        if out is not None:
            replace[out] = _nchw_to_tokens(g, p, conv.output[0], weight.shape[0], out)
        changed += found_in is not None or out is not None
    if replace:
        replace_nodes(model, replace)
        toposort(model)
    return changed


# --------------------------------------------------------------------------------------------------
# Wide 3x3 convolutions -> Winograd F(4x4, 3x3)
# --------------------------------------------------------------------------------------------------

# Winograd's minimal filtering F(4, 3) (interpolation points 0, 1, -1, 2, -2 and infinity): four
# outputs of a 3-tap correlation from six inputs with six multiplications, y = A^T [(G w) * (B^T d)].
# Nested in 2-D, a 4x4 output tile costs 36 multiplies per (input, output) channel pair instead of
# 144, and the multiplies become 36 independent (K x C) @ (C x tiles) GEMMs.
_WINO_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
_WINO_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
_WINO_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                     [0, 1, -1, 8, -8, 1]], dtype=np.float64)

#: Convolutions narrower than this (input or output channels) stay direct. ``benchmarks/winograd.py``
#: with the backend's settings (spinning off): 256->256 and wider 1.05-2.2x on maps of 20x20 and up,
#: 256->36 0.5-1.0x. 256 was chosen from a first run with spinning on, where 128->128 gained only
#: 0.74-1.21x; with spinning off 128->128 gains 1.1-1.5x and 256->128 1.45-1.74x on maps of 32x32
#: and up. End to end, 128 adds 6 Semantic FPN head convs to pvt_small-seg at 512 and took it from
#: 505.9 to 483.7 ms (one interleaved run, 10 rounds): 4 %, within this VM's run-to-run spread, so
#: the threshold stays at 256 until a quieter machine confirms it.
WINOGRAD_MIN_CHANNELS = 256
#: ... and so do maps with fewer 4x4 output tiles than this at the model's own input size: at 10x10
#: (9 tiles) the fixed cost of the extra nodes makes a 256->256 conv 0.6x, at 20x20 (25 tiles)
#: 1.05x (256->720: 1.5x, 512->256: 1.6x).
WINOGRAD_MIN_TILES = 25


def winograd_filter(weight: np.ndarray) -> np.ndarray:
    """``(K, C, 3, 3)`` kernel -> the ``(36, K, C)`` transformed kernel ``G w G^T`` (in float64)."""
    # optimize=True contracts one axis at a time (two small GEMMs), ~2x faster than one nested loop
    u: np.ndarray = np.einsum("ai,kcij,bj->abkc", _WINO_G, weight.astype(np.float64), _WINO_G, optimize=True)
    return u.reshape(36, weight.shape[0], weight.shape[1])


def _nominal_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static shapes of every tensor for one image at the model's own input size (the export's
    ``preprocess.imgsz`` metadata), from ONNX shape inference; empty when that size is unknown."""
    import json

    from onnx import helper, shape_inference

    from pvt_deploy.export.graph import get_metadata

    try:
        meta = json.loads(get_metadata(model, "pvt_deploy") or "{}")
        height, width = (int(v) for v in meta["preprocess"]["imgsz"])
    except (ValueError, KeyError, TypeError):
        return {}
    probe = _shape_probe(model)
    for node in probe.graph.node:
        if node.domain not in ("", "ai.onnx"):
            # ONNX's inference stops at ONNX Runtime's own operators (the INT8 graphs' attention and
            # GELU), whose first output has their first input's shape: an Identity stands in. (The
            # shapes only decide which convs are worth rewriting, never what the graph computes.)
            node.CopyFrom(helper.make_node("Identity", node.input[:1], node.output[:1], name=node.name))
    inits = {i.name for i in probe.graph.initializer}
    inputs = [i for i in probe.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        return {}
    for dim, value in zip(inputs[0].type.tensor_type.shape.dim, (1, None, height, width), strict=True):
        if value is not None:
            dim.Clear()
            dim.dim_value = value
    try:
        inferred = shape_inference.infer_shapes(probe, data_prop=True)
    except Exception as e:  # noqa: BLE001 - an exotic graph loses this rewrite only, not the others
        log.debug("shape inference failed (%s): no Winograd convs", e)
        return {}
    shapes: dict[str, list[int]] = {}
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    return shapes


def _winograd_candidate(g: _Graph, conv: Any, shapes: Mapping[str, list[int]], min_channels: int,
                        min_tiles: int, const: Callable[[str], np.ndarray | None] | None = None) -> bool:
    """Is ``conv`` one that Winograd makes faster? ``const`` reads its float32 weight and bias
    (default: the graph's constants)."""
    const = const or g.const
    weight = const(conv.input[1]) if len(conv.input) > 1 else None
    if weight is None or weight.dtype != np.float32 or weight.shape[2:] != (3, 3):
        return False
    if (attr(conv, "group", 1) != 1 or list(attr(conv, "strides", [1, 1])) != [1, 1]
            or list(attr(conv, "dilations", [1, 1])) != [1, 1] or list(attr(conv, "pads", [0] * 4)) != [1] * 4
            or attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return False
    if len(conv.input) > 2 and conv.input[2] and const(conv.input[2]) is None:
        return False
    k, c = weight.shape[:2]
    shape = shapes.get(conv.input[0])
    if shape is None or len(shape) != 4 or min(k, c) < min_channels:
        return False
    return -(-shape[2] // 4) * -(-shape[3] // 4) >= min_tiles


def winograd_convs(model: onnx.ModelProto, *, min_channels: int = WINOGRAD_MIN_CHANNELS,
                   min_tiles: int = WINOGRAD_MIN_TILES) -> int:
    """Run wide 3x3 stride-1 convolutions (RetinaNet/FPN heads) as Winograd F(4x4, 3x3).

    Per conv, with T = ceil(H/4) * ceil(W/4) output tiles:

    * input transform: the (N*C, 1, H, W) planes through one 6x6 stride-4 Conv whose 36 kernels are
      the rows of ``B^T (x) B^T`` (padding 1 on the top/left, 4 on the bottom/right covers every H);
    * a transpose to (N, 36, C, T) and one batched MatMul with the (36, K, C) transformed kernel;
    * output transform: a (16, 36) MatMul (``A^T (x) A^T``) whose 16 rows are the 4x4 positions of a
      tile, so ``DepthToSpace(4)`` lays them out as the (N, K, 4*th, 4*tw) map; a Slice crops it
      to (H, W) and the bias is added.

    Exact in real arithmetic; in float32 the result differs from the direct conv by ~1e-5 of the
    output's magnitude (the transforms' coefficients reach 8 and 1/24). Which convs are rewritten is
    decided at the model's own input size (``min_channels``, ``min_tiles``); the rewritten graph is
    correct at every size. ``benchmarks/winograd.py`` measures where the thresholds come from.
    """
    g = _Graph(model)
    convs = [n for n in g.graph.node if n.op_type == "Conv"]
    shapes = _nominal_shapes(model) if convs else {}
    found = [n for n in convs if _winograd_candidate(g, n, shapes, min_channels, min_tiles)]
    _as_winograd(model, g, found)
    return len(found)


def _as_winograd(model: onnx.ModelProto, g: _Graph, found: Sequence[Any]) -> None:
    """Replace each conv of ``found`` (3x3, stride 1, padding 1, float32 constant weight and bias)
    by its Winograd nodes."""
    from onnx import helper

    if not found:
        return
    bt2 = np.einsum("ai,bj->abij", _WINO_BT, _WINO_BT).reshape(36, 1, 6, 6)
    at2 = np.einsum("pa,qb->pqab", _WINO_AT, _WINO_AT).reshape(16, 36)
    in_kernel = g.add_init("winograd/input_transform", bt2.astype(np.float32))
    out_matrix = g.add_init("winograd/output_transform", at2.astype(np.float32))
    spatial = g.add_init("winograd/spatial_axes", np.array([2, 3], dtype=np.int64))
    three = g.add_init("winograd/three", np.array([3], dtype=np.int64))
    four = g.add_init("winograd/four", np.array([4], dtype=np.int64))
    first = g.add_init("winograd/first", np.array([0], dtype=np.int64))
    one = g.add_init("winograd/one", np.array([1], dtype=np.int64))
    zeros = g.add_init("winograd/zeros", np.array([0, 0], dtype=np.int64))
    planes = g.add_init("winograd/planes", np.array([-1, 1, 0, 0], dtype=np.int64))
    keep_n36 = g.add_init("winograd/keep_n_36", np.array([0, 36, -1], dtype=np.int64))
    kernels: dict[str, str] = {}  # weight name -> transformed kernel (heads share one across levels)
    replace: dict[str, list[Any]] = {}
    for conv in found:
        p = conv.name or conv.output[0]
        x, weight_name, out = conv.input[0], conv.input[1], conv.output[0]
        weight = g.const(weight_name)
        assert weight is not None  # checked by _winograd_candidate
        k, c = weight.shape[:2]
        if weight_name not in kernels:
            kernels[weight_name] = g.add_init(f"{weight_name}/winograd", winograd_filter(weight).astype(np.float32))
        per_image = g.add_init(f"{p}/winograd_in_shape", np.array([c, 36, -1], dtype=np.int64))
        out_channels = g.add_init(f"{p}/winograd_out_ch", np.array([0, 16 * k], dtype=np.int64))
        t = {s: g.unique(f"{p}/winograd_{s}") for s in (
            "shape", "n", "hw", "hw3", "tiles_hw", "v_shape", "planes", "v", "v4", "vt", "m", "m3", "o",
            "o_shape", "o4", "map", "crop")}
        bias = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        crop_out = t["crop"] if bias is not None else out
        nodes = [
            helper.make_node("Shape", [x], [t["shape"]]),
            helper.make_node("Slice", [t["shape"], first, one], [t["n"]]),
            helper.make_node("Gather", [t["shape"], spatial], [t["hw"]]),
            helper.make_node("Add", [t["hw"], three], [t["hw3"]]),
            helper.make_node("Div", [t["hw3"], four], [t["tiles_hw"]]),
            helper.make_node("Concat", [t["n"], per_image], [t["v_shape"]], axis=0),
            helper.make_node("Reshape", [x, planes], [t["planes"]]),
            helper.make_node("Conv", [t["planes"], in_kernel], [t["v"]], kernel_shape=[6, 6], strides=[4, 4],
                             pads=[1, 1, 4, 4]),
            helper.make_node("Reshape", [t["v"], t["v_shape"]], [t["v4"]]),
            helper.make_node("Transpose", [t["v4"]], [t["vt"]], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [kernels[weight_name], t["vt"]], [t["m"]]),
            helper.make_node("Reshape", [t["m"], keep_n36], [t["m3"]]),
            helper.make_node("MatMul", [out_matrix, t["m3"]], [t["o"]]),
            helper.make_node("Concat", [out_channels, t["tiles_hw"]], [t["o_shape"]], axis=0),
            helper.make_node("Reshape", [t["o"], t["o_shape"]], [t["o4"]]),
            helper.make_node("DepthToSpace", [t["o4"]], [t["map"]], blocksize=4, mode="DCR"),
            helper.make_node("Slice", [t["map"], zeros, t["hw"], spatial], [crop_out]),
        ]
        if bias is not None:
            bias_map = g.add_init(f"{p}/winograd_bias", bias.astype(np.float32).reshape(1, k, 1, 1))
            nodes.append(helper.make_node("Add", [crop_out, bias_map], [out]))
        for i, node in enumerate(nodes):
            node.name = g.unique(f"{p}/winograd_{i}_{node.op_type}")
        replace[out] = nodes
    replace_nodes(model, replace)


def _dequantized_const(g: _Graph, name: str) -> np.ndarray | None:
    """The float32 values of ``name`` when a ``DequantizeLinear`` makes it from constants, computed as
    ONNX Runtime does (``float(q - zero_point) * scale``); ``None`` otherwise."""
    dq = g.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or attr(dq, "block_size", 0):
        return None
    q, scale = g.const(dq.input[0]), g.const(dq.input[1])
    zero = g.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros((), np.int32)
    if q is None or scale is None or zero is None or q.dtype not in (np.int8, np.uint8, np.int32):
        return None
    if scale.size > 1:  # per axis
        axis = attr(dq, "axis", 1) % q.ndim
        view = [1] * q.ndim
        view[axis] = -1
        scale, zero = scale.reshape(view), zero.reshape(view)
    value: np.ndarray = (q.astype(np.int64) - zero.astype(np.int64)).astype(np.float32) * scale.astype(np.float32)
    return value


def winograd_int8_convs(model: onnx.ModelProto, *, min_channels: int = WINOGRAD_MIN_CHANNELS,
                        min_tiles: int = WINOGRAD_MIN_TILES) -> int:
    """Run the wide 3x3 convolutions of a Q/DQ graph in float, as Winograd F(4x4, 3x3); return how
    many convs changed.

    For x86 CPUs without VNNI, where ONNX Runtime multiplies 8-bit tensors at 1-2x the float rate
    (``python benchmarks/ort_profile.py --roof``: 1.07x on a Zen 1 EPYC, 2.05x on a Zen 3), so an INT8
    conv, with four times the multiplies of the same conv in Winograd float, is the slower one
    (``pvt_v2_b0`` RetinaNet 640 on the Zen 3: 702 ms with INT8 head convs, 602 ms as float Winograd). The conv keeps its quantized input (``DequantizeLinear`` of
    an 8-bit activation) and whatever requantizes its output; its weight and bias, ``DequantizeLinear``
    of constants, become the float constants ONNX Runtime's ``DequantizeLinear`` computes. The graph
    still computes the INT8 model (every activation on the same 8-bit grid); the conv's sums differ
    from exact integer ones by float rounding (~1e-5 of the output's magnitude), which moves an
    output that lies on a rounding boundary of its grid by one step. Which convs qualify is decided
    as in :func:`winograd_convs`.
    """
    g = _Graph(model)
    values: dict[str, np.ndarray | None] = {}  # weights and biases, each dequantized once (heads share them)

    def value(name: str) -> np.ndarray | None:
        """A float constant as it is, a ``DequantizeLinear`` of constants as ONNX Runtime computes it."""
        if name not in values:
            values[name] = g.const(name) if g.const(name) is not None else _dequantized_const(g, name)
        return values[name]

    convs = [n for n in g.graph.node if n.op_type == "Conv" and g.parent(n, 0, "DequantizeLinear") is not None
             and g.parent(n, 1, "DequantizeLinear") is not None]
    wide = any((w := value(n.input[1])) is not None and w.shape[2:] == (3, 3) for n in convs)
    shapes = _nominal_shapes(model) if wide else {}
    found = [n for n in convs if _winograd_candidate(g, n, shapes, min_channels, min_tiles, value)]
    floats: dict[str, str] = {}  # DequantizeLinear output -> its float initializer
    for conv in found:
        for i, name in enumerate(conv.input[1:3], start=1):
            if name and g.const(name) is None:
                if name not in floats:
                    dequantized = value(name)
                    assert dequantized is not None  # checked by _winograd_candidate
                    floats[name] = g.add_init(f"{name}/float", dequantized)
                conv.input[i] = floats[name]
    _as_winograd(model, g, found)
    return len(found)


# --------------------------------------------------------------------------------------------------
# Token convolutions laid out for the CPU INT8 graph
# --------------------------------------------------------------------------------------------------


def _patch_conv(g: _Graph, conv: Any) -> _TokenConv | None:
    """A token conv whose kernel equals its stride (no padding, dilation or groups): each output
    token is one (k, k, C) patch of input tokens times a (k*k*C, K) matrix."""
    m = _token_conv(g, conv)
    if m is None or m.weight.shape[2] != m.weight.shape[3] or m.weight.dtype != np.float32:
        return None
    k = m.weight.shape[2]
    if (list(attr(conv, "strides", [1, 1])) != [k, k] or any(attr(conv, "pads", [0] * 4))
            or list(attr(conv, "dilations", [1, 1])) != [1, 1] or attr(conv, "group", 1) != 1):
        return None
    if len(conv.input) > 2 and conv.input[2] and g.const(conv.input[2]) is None:
        return None
    return m


def patch_convs_as_matmuls(model: onnx.ModelProto) -> int:
    """Run every non-overlapping token conv (kernel = stride: PVT's spatial-reduction convs, v1's
    patch embeddings of stages 2-4) as one MatMul on the token sequence; return how many.

    The (B, N, C) tokens are viewed as (B, H, W, C), cropped to whole patches (what a stride-k conv
    without padding reads), rearranged by one 6-D Transpose into (B, H/k * W/k, k*k*C) patch rows and
    multiplied by the kernel laid out as a (k*k*C, K) matrix, which gives the (B, M, K) tokens the
    conv's flatten and transpose produced. Same numbers up to float summation order. As a conv these
    stay FP32 in the dynamic INT8 graph; as a MatMul they are quantized like every other linear layer.
    """
    from onnx import helper

    g = _Graph(model)
    found = [m for n in list(g.graph.node) if n.op_type == "Conv" and (m := _patch_conv(g, n)) is not None]
    replace: dict[str, list[Any]] = {}
    for m in found:
        p = m.conv.name or m.conv.output[0]
        kernel, channels = m.weight.shape[0], m.weight.shape[1]
        k = m.weight.shape[2]
        height, width = _dim(g, m.height, f"{p}/height"), _dim(g, m.width, f"{p}/width")
        k1 = g.add_init(f"{p}/patch", np.array([k], dtype=np.int64))
        c1 = g.add_init(f"{p}/channels", np.array([channels], dtype=np.int64))
        zero1 = g.add_init(f"{p}/zero", np.array([0], dtype=np.int64))
        zero2 = g.add_init(f"{p}/zeros", np.array([0, 0], dtype=np.int64))
        hw_axes = g.add_init(f"{p}/hw_axes", np.array([1, 2], dtype=np.int64))
        # the rows' shape from the patch grid, (0, H/k * W/k, -1): a constant k*k*C (4096 for v1's first SR conv)
        # is also a size a trace at 128 gives (64 * 64 tokens at stride 2), which the graph check refuses
        minus1 = g.add_init(f"{p}/minus_one", np.array([-1], dtype=np.int64))
        weight = g.add_init(f"{p}/weight_matrix",
                            np.ascontiguousarray(m.weight.transpose(2, 3, 1, 0).reshape(k * k * channels, kernel)))
        t = {n: g.unique(f"{p}/{n}") for n in ("h_out", "w_out", "h_crop", "w_crop", "map_shape", "map", "crop_end",
                                               "cropped", "patch_shape", "patches", "patches_t", "grid", "rows_shape",
                                               "rows", "product")}
        nodes = [
            helper.make_node("Div", [height, k1], [t["h_out"]]),
            helper.make_node("Div", [width, k1], [t["w_out"]]),
            helper.make_node("Mul", [t["h_out"], k1], [t["h_crop"]]),
            helper.make_node("Mul", [t["w_out"], k1], [t["w_crop"]]),
            helper.make_node("Concat", [zero1, height, width, c1], [t["map_shape"]], axis=0),
            helper.make_node("Reshape", [m.tokens, t["map_shape"]], [t["map"]]),
            helper.make_node("Concat", [t["h_crop"], t["w_crop"]], [t["crop_end"]], axis=0),
            helper.make_node("Slice", [t["map"], zero2, t["crop_end"], hw_axes], [t["cropped"]]),
            helper.make_node("Concat", [zero1, t["h_out"], k1, t["w_out"], k1, c1], [t["patch_shape"]], axis=0),
            helper.make_node("Reshape", [t["cropped"], t["patch_shape"]], [t["patches"]]),
            helper.make_node("Transpose", [t["patches"]], [t["patches_t"]], perm=[0, 1, 3, 2, 4, 5]),
            helper.make_node("Mul", [t["h_out"], t["w_out"]], [t["grid"]]),
            helper.make_node("Concat", [zero1, t["grid"], minus1], [t["rows_shape"]], axis=0),
            helper.make_node("Reshape", [t["patches_t"], t["rows_shape"]], [t["rows"]]),
        ]
        bias = g.const(m.conv.input[2]) if len(m.conv.input) > 2 and m.conv.input[2] else None
        if bias is None:
            nodes.append(helper.make_node("MatMul", [t["rows"], weight], [m.out]))
        else:
            b = g.add_init(f"{p}/bias", bias.astype(np.float32))
            nodes += [helper.make_node("MatMul", [t["rows"], weight], [t["product"]]),
                      helper.make_node("Add", [t["product"], b], [m.out])]
        # v1's patch embeddings read H' and W' of the next stage from Shape(conv output): give those
        # readers the same (B, K, H', W') without running the conv.
        shape_readers = [u for u in g.consumers.get(m.conv.output[0], []) if u.op_type == "Shape"]
        if shape_readers:
            batch, full = g.unique(f"{p}/batch"), g.unique(f"{p}/out_shape")
            kernels = g.add_init(f"{p}/kernels", np.array([kernel], dtype=np.int64))
            nodes += [helper.make_node("Shape", [m.tokens], [batch], start=0, end=1),
                      helper.make_node("Concat", [batch, kernels, t["h_out"], t["w_out"]], [full], axis=0)]
            for reader in shape_readers:
                start, end = attr(reader, "start", 0), attr(reader, "end")
                lo = g.add_init(f"{p}/shape_start", np.array([start], dtype=np.int64))
                hi = g.add_init(f"{p}/shape_end", np.array([4 if end is None else end], dtype=np.int64))
                replace[reader.output[0]] = [helper.make_node("Slice", [full, lo, hi], [reader.output[0]],
                                                              name=g.unique(f"{p}/out_shape_Slice"))]
        for i, node in enumerate(nodes):
            node.name = g.unique(f"{p}/patch_matmul_{i}_{node.op_type}")
        replace[m.out] = nodes
    if found:
        replace_nodes(model, replace)
        toposort(model)  # the shape readers now read values computed further down
    return len(found)


def depthwise_channels_last(model: onnx.ModelProto) -> int:
    """Give every depthwise token conv (PVT v2's MLP) its layout changes as 4-D NHWC transposes;
    return how many.

    Exported, the conv reads ``Reshape(Transpose(tokens, (0,2,1)), (b, C, H, W))`` and writes
    ``Transpose(Reshape(y, (b, C, N)), (0,2,1))``: two 3-D transposes of the block's widest tensor, which
    ONNX Runtime runs as separate copies before and after its own NCHWc reorders. Written as
    ``Transpose(Reshape(tokens, (b, H, W, C)), (0,3,1,2))`` and ``Reshape(Transpose(y, (0,2,3,1)), (b, N, C))``,
    ONNX Runtime's NCHWc pass folds both into its reorders (``ReorderInput``/``ReorderOutput`` with
    ``channels_last``), so the copies disappear. The conv itself is untouched: the result is identical.
    (The FP32 graph does better with :func:`mlp_as_convs`, which needs fc1 and fc2 as float convs.)
    """
    from onnx import helper

    g = _Graph(model)
    found = [m for n in list(g.graph.node)
             if n.op_type == "Conv" and (m := _token_conv(g, n)) is not None
             and m.weight.shape[1] == 1 and attr(n, "group", 1) == m.weight.shape[0] > 1]
    replace: dict[str, list[Any]] = {}
    for m in found:
        p = m.conv.name or m.conv.output[0]
        channels = m.weight.shape[0]
        zero1 = g.add_init(f"{p}/zero", np.array([0], dtype=np.int64))
        c1 = g.add_init(f"{p}/channels", np.array([channels], dtype=np.int64))
        flat = g.add_init(f"{p}/tokens_shape", np.array([0, -1, channels], dtype=np.int64))
        shape, nhwc, out_nhwc = g.unique(f"{p}/nhwc_shape"), g.unique(f"{p}/nhwc_in"), g.unique(f"{p}/nhwc_out")
        replace[m.map_in] = [
            helper.make_node("Concat", [zero1, _dim(g, m.height, f"{p}/height"), _dim(g, m.width, f"{p}/width"), c1],
                             [shape], name=g.unique(f"{p}/nhwc_Concat"), axis=0),
            helper.make_node("Reshape", [m.tokens, shape], [nhwc], name=g.unique(f"{p}/nhwc_Reshape")),
            helper.make_node("Transpose", [nhwc], [m.map_in], name=g.unique(f"{p}/to_nchw"), perm=[0, 3, 1, 2]),
        ]
        replace[m.out] = [
            helper.make_node("Transpose", [m.conv.output[0]], [out_nhwc], name=g.unique(f"{p}/to_nhwc"), perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [out_nhwc, flat], [m.out], name=g.unique(f"{p}/tokens_Reshape")),
        ]
    if found:
        replace_nodes(model, replace)
    return len(found)


def int8_cpu_layout(model: onnx.ModelProto, *, method: str = "dynamic") -> dict[str, int]:
    """Rewrite, in place, the float graph that the CPU INT8 flavour quantizes; return how many blocks
    each rewrite changed. Applied before quantization, so the export's parity gate measures the graph
    that runs. Every rewrite is exact in float.

    * ``patch_matmuls`` (``method="dynamic"`` only): patch and spatial-reduction convs as MatMuls, so
      weight-only INT8 quantizes them like the other linear layers. The static method keeps them
      float convs (quantized, they cost the detectors detection agreement, see
      :mod:`pvt_deploy.export.precision`).
    * ``depthwise_channels_last``: v2's depthwise MLP conv between 4-D NHWC transposes that ONNX
      Runtime folds into its reorders (float conv) or into a channels-last ``QLinearConv`` (INT8).
    * ``sra_attention``: the FP32 rewrite (``MultiHeadAttention``). The attention's own MatMuls are
      activation by activation and stay float under INT8, so fusing them first is exact here too.
      In a quantized graph ONNX Runtime does not fuse them itself, and the unfused attention with
      its transposes took 13-15 % of a detector's INT8 time (``benchmarks/ort_profile.py``).
    * ``gelu``: each exact GELU as one node (:func:`fuse_gelu`), so it stays one kernel after an
      INT8 conv.
    * ``plain_attention`` (``method="dynamic"`` only): each fused attention then written back as
      plain operators (:func:`attention_as_matmuls`), which the classifiers' batch shards run faster
      (measured there only; the static method keeps ``MultiHeadAttention``).
    """
    if method not in ("dynamic", "static"):
        raise ValueError(f"unknown INT8 method {method!r}")
    counts = {"patch_matmuls": patch_convs_as_matmuls(model) if method == "dynamic" else 0,
              "depthwise_channels_last": depthwise_channels_last(model),
              "sra_attention": fuse_sra_attention(model), "gelu": fuse_gelu(model)}
    if method == "dynamic":
        counts["plain_attention"] = attention_as_matmuls(model)
    if any(counts.values()):
        toposort(model)
        produced = {x for n in model.graph.node for x in n.output}
        stale = [v for v in model.graph.value_info if v.name not in produced]
        for v in stale:  # shapes of tensors the rewrites removed
            model.graph.value_info.remove(v)
    return counts


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


@dataclass
class OptimizeReport:
    """What :func:`optimize_for_ort` changed (stored beside the cached graph)."""

    rewrites: dict[str, int] = field(default_factory=dict)
    nodes_before: int = 0
    nodes_after: int = 0
    skipped: str | None = None  # why the graph was left alone

    def to_json(self) -> dict[str, Any]:
        return {"rewrites": dict(self.rewrites), "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "skipped": self.skipped}


def amx_conv_weights(model: onnx.ModelProto) -> int:
    """Give the symmetric INT8 weights of a Q/DQ graph's convolutions a zero point of -1; return how
    many weight tensors changed.

    ONNX Runtime runs a ``QLinearConv`` whose weights have a zero point of 0 with its symmetric
    convolution kernels (AVX2/AVX-512 VNNI), and one with any other zero point as im2col plus its
    U8S8 GEMM, which uses AMX tiles on CPUs that have them (Intel Sapphire Rapids and later). There
    the GEMM path is 1.5-2x faster (``python benchmarks/int8_variants.py --flavours export,no-amx``).
    The values do not change: symmetric INT8 weights lie in [-127, 127], so ``q - 1`` with zero
    point -1 dequantizes to the same ``scale * q`` and the integer products are identical; the
    outputs are bit-for-bit the same. Only ``DequantizeLinear`` initializers read solely as the
    weights of ungrouped convs whose input is a uint8 activation are changed (the measured case;
    depthwise convs take another kernel and are left alone).
    :func:`pvt_deploy.runtimes.ort_session.default_rewrites` applies it only where the CPU reports
    AMX-INT8.
    """
    from onnx import numpy_helper

    g = _Graph(model)
    changed = 0
    for dq in list(g.graph.node):
        if dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or dq.input[0] not in g.inits:
            continue
        users = g.consumers.get(dq.output[0], [])
        if not users or dq.output[0] in g.outputs or not all(
                u.op_type == "Conv" and list(u.input).index(dq.output[0]) == 1 and attr(u, "group", 1) == 1
                and _uint8_activation(g, u) for u in users):
            continue
        weight, zero = g.const(dq.input[0]), g.const(dq.input[2])
        if (weight is None or zero is None or weight.dtype != np.int8 or zero.dtype != np.int8 or zero.any()
                or int(weight.min(initial=0)) < -127 or dq.input[2] not in g.inits
                or len(g.consumers.get(dq.input[0], [])) != 1 or len(g.consumers.get(dq.input[2], [])) != 1):
            continue
        g.inits[dq.input[0]].CopyFrom(numpy_helper.from_array((weight.astype(np.int16) - 1).astype(np.int8),
                                                              dq.input[0]))
        g.inits[dq.input[2]].CopyFrom(numpy_helper.from_array(np.full(zero.shape, -1, np.int8), dq.input[2]))
        changed += 1
    return changed


def unsigned_int8(model: onnx.ModelProto) -> int:
    """Re-base the int8 tensors of a quantized graph's integer products to uint8 (value and zero point
    plus 128), so that ONNX Runtime multiplies U8U8; return how many tensors changed.

    On x86 CPUs without VNNI (before Cascade Lake and Zen 4) ONNX Runtime multiplies 8-bit tensors
    with ``vpmaddubsw``, which adds pairs of uint8 x int8 products into saturating 16-bit sums: two
    activations near 255 times weights near 127 clip at 32767, and the outputs drift (RetinaNet
    pvt_v2_b0 detection F1 0.672 against PyTorch FP32 on the AVX2 EPYC, ``python
    benchmarks/speed.py``; its S8S8 paths, which the TensorRT flavour takes on the CPU, drift too). Its
    U8U8 kernels widen to 16 bits first and are exact. ``v + 128`` with zero point ``z + 128``
    dequantizes to the same ``scale * (v - z)``, and an int8 ``QuantizeLinear`` plus 128 is the uint8
    one with its zero point plus 128 (the clip moves with it), so every dequantized value, and so every
    output, is what exact integer arithmetic gives. Covered:

    * int8 activations: a ``QuantizeLinear`` whose readers are all ``DequantizeLinear`` nodes with
      its scale and zero point (the TensorRT flavour's symmetric activations);
    * weights: ``DequantizeLinear`` weights of Q/DQ graphs (the weight of a Conv/MatMul/Gemm whose other
      input is a uint8 activation) and the B input of ``MatMulInteger``/``ConvInteger`` (dynamic
      quantization, uint8 A).

    A weight that anything else reads is left alone; a zero point shared with other readers gets a
    uint8 twin. :func:`pvt_deploy.runtimes.ort_session.default_rewrites` applies it only where the CPU
    is x86 without VNNI.
    """
    from onnx import numpy_helper

    def plus_128(value: np.ndarray) -> np.ndarray:
        return (value.astype(np.int16) + 128).astype(np.uint8)

    g = _Graph(model)
    twins: dict[str, str] = {}

    def unsigned_twin(name: str, value: np.ndarray) -> str:
        """A uint8 initializer equal to the int8 one ``name`` (whose ``value`` it is) plus 128, made once
        per name."""
        if name not in twins:
            twin = g.unique(f"{name}_u8")
            g.graph.initializer.append(numpy_helper.from_array(plus_128(value), twin))
            twins[name] = twin
        return twins[name]

    changed = 0
    for q in list(g.graph.node):
        if q.op_type != "QuantizeLinear" or len(q.input) < 3 or q.input[2] not in g.inits:
            continue
        zero = g.const(q.input[2])
        readers = g.consumers.get(q.output[0], [])
        if (zero is None or zero.dtype != np.int8 or not readers or q.output[0] in g.outputs
                or any(r.op_type != "DequantizeLinear" or list(r.input[1:3]) != list(q.input[1:3]) for r in readers)):
            continue
        twin = unsigned_twin(q.input[2], zero)
        for node in (q, *readers):
            node.input[2] = twin
        changed += 1
    g = _Graph(model)  # activations are uint8 now: the weight checks below read them
    for node in list(g.graph.node):
        if node.op_type == "DequantizeLinear" and len(node.input) > 2:
            weight_name, zero_index = node.input[0], 2
            users = g.consumers.get(node.output[0], [])
            uint8 = bool(users) and node.output[0] not in g.outputs and all(
                u.op_type in ("Conv", "MatMul", "Gemm") and list(u.input).index(node.output[0]) == 1
                and _uint8_activation(g, u) for u in users)
        elif node.op_type in ("MatMulInteger", "ConvInteger") and len(node.input) > 3:
            weight_name, zero_index = node.input[1], 3
            a = g.producer.get(node.input[0])
            a_zero = g.const(node.input[2]) if node.input[2] else None
            uint8 = (a is not None and a.op_type == "DynamicQuantizeLinear") or (
                a_zero is not None and a_zero.dtype == np.uint8)
        else:
            continue
        zero_name = node.input[zero_index]
        if not uint8 or weight_name not in g.inits or zero_name not in g.inits:
            continue
        weight, zero = g.const(weight_name), g.const(zero_name)
        if (weight is None or zero is None or weight.dtype != np.int8 or zero.dtype != np.int8
                or len(g.consumers.get(weight_name, [])) != 1):
            continue
        g.inits[weight_name].CopyFrom(numpy_helper.from_array(plus_128(weight), weight_name))
        node.input[zero_index] = unsigned_twin(zero_name, zero)
        changed += 1
    used = {x for n in g.graph.node for x in n.input}
    for init in [i for i in g.graph.initializer if i.name in twins and i.name not in used]:
        g.graph.initializer.remove(init)  # int8 zero points nobody reads any more
    return changed


def int8_gelu_bias(model: onnx.ModelProto) -> int:
    """In a Q/DQ graph, write each linear layer that feeds an exact GELU (PVT v1's fc1) as one
    ``com.microsoft`` ``MatMulIntegerToFloat`` that adds its bias; return how many.

    ONNX Runtime turns ``DequantizeLinear`` x2 -> ``MatMul`` into ``MatMulIntegerToFloat`` itself, but
    leaves the bias ``Add`` out of it and fuses that into the GELU as ``BiasGelu``, ~1.6x the time of a
    plain ``Gelu`` on the block's widest tensor (the float graph's case, :func:`gelu_bias_in_matmul`).
    Here the bias goes into the integer GEMM's float epilogue (``acc * scale + bias``, the same
    arithmetic), and the GELU runs plain. Only per-tensor activations and per-tensor or per-column
    (``axis=1``) weights of a constant 2-D ``DequantizeLinear`` are taken, as that op defines them.
    """
    from onnx import helper

    g = _Graph(model)
    replace: dict[str, list[Any]] = {}
    for x in _gelu_inputs(g):
        add = g.producer.get(x)
        biased = _biased_matmul(g, add) if add is not None else None
        if biased is None:
            continue
        mm, bias_name, bias = biased
        dq_a, dq_w = g.parent(mm, 0, "DequantizeLinear"), g.parent(mm, 1, "DequantizeLinear")
        if dq_a is None or dq_w is None or len(dq_a.input) < 3 or len(dq_w.input) < 3 or g.only_consumer(mm.output[0]) is None:
            continue
        a_scale, a_zero = g.const(dq_a.input[1]), g.const(dq_a.input[2])
        weight, w_scale, w_zero = (g.const(v) for v in dq_w.input[:3])
        if (a_scale is None or a_zero is None or a_scale.size != 1 or a_zero.size != 1 or weight is None
                or weight.ndim != 2 or w_scale is None or w_zero is None or w_zero.shape != w_scale.shape
                or bias.shape != (weight.shape[1],) or bias.dtype != np.float32
                or {a_scale.dtype, w_scale.dtype} != {np.dtype(np.float32)} or weight.dtype != w_zero.dtype
                or {weight.dtype, a_zero.dtype} - {np.dtype(np.int8), np.dtype(np.uint8)}):
            continue
        per_column = w_scale.ndim == 1 and w_scale.size == weight.shape[1] and attr(dq_w, "axis", 1) in (1, -1)
        if w_scale.size != 1 and not per_column:
            continue
        replace[x] = [helper.make_node(
            "MatMulIntegerToFloat",
            [dq_a.input[0], dq_w.input[0], dq_a.input[1], dq_w.input[1], dq_a.input[2], dq_w.input[2], bias_name],
            [x], name=g.unique(f"{mm.name or x}/MatMulIntegerToFloat"), domain=MS_DOMAIN)]
    if replace:
        _ensure_ms_opset(model)
        replace_nodes(model, replace)
    return len(replace)


def _uint8_activation(g: _Graph, conv: Any) -> bool:
    """Is the node's first input a ``DequantizeLinear`` of a uint8 tensor (the U8S8 case measured)?"""
    dq = g.parent(conv, 0, "DequantizeLinear")
    if dq is None:
        return False
    zero = g.const(dq.input[2]) if len(dq.input) > 2 else None
    return zero is not None and zero.dtype == np.uint8


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
              "QLinearConv", "QLinearMatMul"}


def graph_precision(model: onnx.ModelProto) -> str:
    """What a graph holds, read from the graph itself: ``int8`` (quantization nodes: Q/DQ, dynamic
    MatMulInteger), ``fp16`` (float16 weights), else ``fp32``. One pass over its nodes and initializers'
    headers: cheap where the graph is parsed already; a file's name says nothing of it."""
    from onnx import TensorProto

    if any(n.op_type in _QUANT_OPS for n in model.graph.node):
        return "int8"
    if any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def _unsupported(model: onnx.ModelProto) -> str | None:
    """Graphs the float rewrites leave alone: quantized ones (the INT8 layout already fused what pays
    there, :func:`int8_cpu_layout`; they get the :data:`QUANTIZED_REWRITES`) and float16 ones (the
    new weights are float32)."""
    return {"int8": "quantized graph", "fp16": "float16 graph"}.get(graph_precision(model))


#: Rewrites of float graphs, then of quantized ones (each kind leaves the other alone).
FLOAT_REWRITES = ("winograd_convs", "sra_attention", "mlp_convs", "channels_last_convs", "gelu_bias_matmuls")
_QUANTIZED = {"amx_conv_weights": amx_conv_weights, "winograd_int8_convs": winograd_int8_convs,
              "unsigned_int8": unsigned_int8, "int8_channels_last_convs": convs_channels_last,
              "int8_gelu_bias": int8_gelu_bias}  # in this order
QUANTIZED_REWRITES = tuple(_QUANTIZED)
REWRITES = FLOAT_REWRITES + QUANTIZED_REWRITES
#: Bumped whenever a rewrite changes what it produces: part of the session cache's key
#: (``runtimes.ort_session``), so a cached graph from an earlier recipe is never loaded.
RECIPE = 12


def optimize_for_ort(model: onnx.ModelProto, rewrites: Iterable[str] = REWRITES) -> tuple[onnx.ModelProto, OptimizeReport]:
    """A copy of ``model`` with the CPU rewrites applied (the input is never modified)."""
    import onnx

    from pvt_deploy.export.graph import toposort

    out = onnx.ModelProto.FromString(model.SerializeToString())
    report = OptimizeReport(nodes_before=len(out.graph.node))
    wanted = list(rewrites)
    unknown = [r for r in wanted if r not in REWRITES]
    if unknown:
        raise ValueError(f"unknown rewrite {unknown[0]!r}; choose from {', '.join(REWRITES)}")
    skip = _unsupported(out)
    report.rewrites = dict.fromkeys(wanted, 0)
    if skip:
        report.skipped = skip
        if skip == "quantized graph":
            for name, rewrite in _QUANTIZED.items():  # their own order, whatever the caller's
                if name in wanted:
                    report.rewrites[name] = rewrite(out)
        report.nodes_after = len(out.graph.node)
        return out, report
    if "winograd_convs" in wanted:  # first: it reads shapes by ONNX shape inference (no contrib ops)
        report.rewrites["winograd_convs"] = winograd_convs(out)
    if "sra_attention" in wanted:
        report.rewrites["sra_attention"] = fuse_sra_attention(out)
    if "mlp_convs" in wanted:
        report.rewrites["mlp_convs"] = mlp_as_convs(out)
    if "channels_last_convs" in wanted:  # after mlp_convs, whose fc1/fc2 convs it then leaves alone
        report.rewrites["channels_last_convs"] = convs_channels_last(out)
    if "gelu_bias_matmuls" in wanted:  # after mlp_convs, which takes v2's fc1 whole
        report.rewrites["gelu_bias_matmuls"] = gelu_bias_in_matmul(out)
    toposort(out)
    report.nodes_after = len(out.graph.node)
    return out, report
