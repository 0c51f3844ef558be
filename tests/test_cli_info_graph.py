"""``pvt-deploy info --graph``: what is inside each graph of an artifact (as ``polygraphy inspect model
--show layers``), checked against counts made here with the onnx package and against what the FP16 and
INT8 writers record in the manifest; an engine's layers from TensorRT's engine inspector (a fake one)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from cli_run import run
from export_fixtures import Artifact
from onnx import TensorProto, helper, numpy_helper
from test_tensorrt_build_fake import fake_engine, make_artifact, use_fake  # noqa: F401 - use_fake: a fixture

from pvt_deploy.export.graph import graph_summary
from pvt_deploy.export.precision import HEAVY_OPS
from pvt_deploy.export.qdq import QUANT_OPS
from pvt_deploy.export.tensorrt import build_engine
from pvt_deploy.runtimes.base import TensorSpec

pytest_plugins = ["export_fixtures"]

VARIANTS = ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx")


def _graph_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], artifact: Path | str, *,
                code: int = 0) -> dict[str, dict[str, Any]]:
    """``info --graph --json``'s graphs by file; ``code``: the exit expected (1 where a file changed since the
    export or a graph cannot be read)."""
    got, out, err = run(monkeypatch, capsys, "info", str(artifact), "--graph", "--json")
    assert got == code, err
    return {row["file"]: row for row in json.loads(out)["graph"]}


def _quantized_here(model: onnx.ModelProto) -> Counter[str]:
    """Conv/MatMul/Gemm nodes of a Q/DQ graph that read a DequantizeLinear output, counted here."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return Counter(n.op_type for n in model.graph.node if n.op_type in QUANT_OPS and set(n.input[:2]) & dq)


def test_graph_counts_what_each_variant_holds(det_artifact: Artifact, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    graphs = _graph_json(monkeypatch, capsys, det_artifact.folder)
    assert list(graphs) == list(VARIANTS)
    record = det_artifact.manifest["precision"]
    for name in VARIANTS:
        model = onnx.load(str(det_artifact.folder / name))
        row = graphs[name]
        ops = Counter(n.op_type for n in model.graph.node)
        assert row["ops"] == dict(ops) and list(row["ops"].values()) == sorted(ops.values(), reverse=True)
        assert row["nodes"] == len(model.graph.node)
        assert sum(row["compute"].values()) + row["casts"] + row["qdq"] + row["non_float"] + row["unknown"] == row["nodes"]
        assert {op: sum(by.values()) for op, by in row["types_by_op"].items()} == dict(ops)
        assert row["opsets"] == {o.domain or "ai.onnx": o.version for o in model.opset_import}
        assert row["ir_version"] == model.ir_version and row["producer"]["name"] == model.producer_name == "pvt-deploy"
        arrays = [numpy_helper.to_array(i) for i in model.graph.initializer]
        assert row["initializers"]["count"] == len(arrays)
        assert row["initializers"]["bytes"] == sum(a.nbytes for a in arrays)
        assert row["parameters"] == sum(a.size for a in arrays)
        assert row["qdq"] == ops["QuantizeLinear"] + ops["DequantizeLinear"]
    # FP16: what precision.py keeps in float32 computes in float32, the heavy ops in float16
    fp16 = graphs["model.fp16.onnx"]
    assert fp16["precision"] == "fp16" and set(fp16["compute"]) == {"float16", "float32"}
    for op in record["fp16"]["fp32_ops"]:
        assert "float16" not in fp16["types_by_op"][op], op
    for op in ("LayerNormalization", "Softmax", "Sigmoid", "Exp", "TopK"):
        assert fp16["types_by_op"][op] == {"float32": fp16["ops"][op]}, op
    for op in HEAVY_OPS:
        if op in fp16["ops"]:
            assert fp16["types_by_op"][op] == {"float16": fp16["ops"][op]}, op
    assert graphs["model.onnx"]["compute"] == {"float32": sum(graphs["model.onnx"]["compute"].values())}
    # INT8: the quantized Conv/MatMul nodes are those that read a DequantizeLinear; the CPU flavour's
    # are the nodes its plan quantized (the manifest's count)
    for name in ("model.int8.onnx", "model.int8.trt.onnx"):
        model = onnx.load(str(det_artifact.folder / name), load_external_data=False)
        here = _quantized_here(model)
        ops = Counter(n.op_type for n in model.graph.node)
        assert graphs[name]["quantized"] == {op: {"quantized": here[op], "nodes": ops[op]} for op in QUANT_OPS if ops[op]}
        assert here["Conv"] and here["MatMul"]
    assert sum(q["quantized"] for q in graphs["model.int8.onnx"]["quantized"].values()) == record["int8"]["cpu"]["nodes"]
    assert graphs["model.int8.trt.onnx"]["quantized"]["Conv"]["quantized"] == graphs["model.int8.trt.onnx"]["ops"]["Conv"]
    # the text: one line per file saying the same
    code, out, err = run(monkeypatch, capsys, "info", str(det_artifact.folder), "--graph")
    assert code == 0, err
    text = " ".join(out.split())
    f16, f32 = fp16["compute"]["float16"], fp16["compute"]["float32"]
    assert f"graph model.fp16.onnx (fp16): {fp16['nodes']} nodes, {f16} compute in float16, {f32} in float32 (" in text
    q = graphs["model.int8.onnx"]["quantized"]
    assert (f"graph model.int8.onnx (int8, cpu): {graphs['model.int8.onnx']['nodes']} nodes, "
            f"{q['Conv']['quantized']} of {q['Conv']['nodes']} Convs and {q['MatMul']['quantized']} of "
            f"{q['MatMul']['nodes']} MatMuls quantized; {graphs['model.int8.onnx']['qdq']} Q/DQ") in text
    assert "│ LayerNormalization │ 30 │ float32 30 │" in " ".join(out.split())


def test_plain_info_reads_no_graph(det_artifact: Artifact, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Without --graph, info of an export folder stays as fast as it was: no graph is parsed."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("onnx.load called by plain info")

    monkeypatch.setattr(onnx, "load", refuse)
    monkeypatch.setattr(onnx, "load_model", refuse)
    code, out, err = run(monkeypatch, capsys, "info", str(det_artifact.folder), "--json")
    assert code == 0, err
    assert "graph" not in json.loads(out)
    code, out, err = run(monkeypatch, capsys, "info", str(det_artifact.folder))
    assert code == 0 and "graph " not in out and "Traceback" not in err


def test_graph_sizes_come_from_dims_without_the_external_data(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A graph whose weights are in an external file is summarised without reading that file: the
    initializers' bytes are their dims times their type's size (the file is deleted here)."""
    folder = make_artifact(tmp_path / "art")
    model = onnx.load(str(folder / "model.onnx"))
    (w,) = model.graph.initializer
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w), w.name))  # raw bytes, which go to the file
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    (folder / "weights.bin").unlink()
    row = _graph_json(monkeypatch, capsys, folder, code=1)["model.onnx"]  # model.onnx is not the file listed
    assert row["initializers"] == {"count": 1, "bytes": 8 * 3 * 3 * 3 * 4,
                                   "by_dtype": {"float32": {"count": 1, "bytes": 864, "values": 216}}}
    assert row["ops"] == {"Conv": 1, "Flatten": 1, "GlobalAveragePool": 1} and row["compute"] == {"float32": 3}


def test_a_file_that_parses_as_an_empty_model_is_no_graph(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Two stray bytes parse as an empty ModelProto (an unknown field): its row said '(fp32): 0 nodes'."""
    folder = make_artifact(tmp_path / "art")
    (folder / "model.onnx").write_bytes(b"xx")
    assert not onnx.load(str(folder / "model.onnx")).graph.node  # what onnx makes of it
    row = _graph_json(monkeypatch, capsys, folder, code=1)["model.onnx"]
    assert row == {"file": "model.onnx", "format": "onnx", "precision": "fp32",  # the manifest's
                   "error": "not a readable ONNX model (no graph in it)", "unreadable": True}


def test_integer_kernels_and_unknown_types() -> None:
    """ONNX Runtime's integer kernels count as the quantized form of their float op; a node of an op that
    shape inference does not know has type "?" (and so may every node after it)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    wq = numpy_helper.from_array(np.ones((4, 4), np.int8), "wq")
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "s", "z"]),
             helper.make_node("MatMulInteger", ["xq", "wq"], ["acc"]),
             helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("Mystery", ["y"], ["m"], domain="example.custom")]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, wq])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)])
    summary = graph_summary(model)
    assert summary["quantized"] == {"MatMul": {"quantized": 1, "nodes": 2}} and summary["qdq"] == 1
    assert summary["types_by_op"]["MatMulInteger"] == {"int32": 1} and summary["types_by_op"]["MatMul"] == {"float32": 1}
    assert summary["precision"] == "int8" and summary["opsets"] == {"ai.onnx": 17, "example.custom": 1}
    assert summary["types_by_op"]["Mystery"] == {"?": 1} and summary["unknown"] == 1
    assert summary["initializers"]["by_dtype"] == {"float32": {"count": 1, "bytes": 64, "values": 16},
                                                   "int8": {"count": 1, "bytes": 16, "values": 16}}


def test_no_graph_says_what_to_export(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "info", "pvt_v2_b0-cls", "--graph")
    assert code == 0, err
    assert out.count("no ONNX graph here") == 1
    assert "graph: no ONNX graph here (export it: pvt-deploy export --model pvt_v2_b0-cls)" in out
    code, out, err = run(monkeypatch, capsys, "info", "pvt_v2_b0-cls", "--graph", "--json")
    assert code == 0 and json.loads(out)["graph"] == []


def test_an_engines_layers_come_from_the_engine_inspector(use_fake: Any, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                          capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trt = use_fake()
    folder = make_artifact(tmp_path / "art")
    build_engine(folder)
    layers = [{"Name": "conv1 + relu1", "LayerType": "CaskConvolution"}, {"Name": "conv2", "LayerType": "CaskConvolution"},
              {"Name": "{ForeignNode[/pool.../flatten]}", "LayerType": "Myelin"}]
    for inspected, want in ((layers, {"layers": 3, "types": {"CaskConvolution": 2, "Myelin": 1}}),
                            (None, {"layers": 2, "types": None})):  # the default verbosity: names only
        engine = fake_engine("FLOAT", layers=[("conv1 + relu1", 0.5), ("conv2", 0.25)], inspected=inspected)
        monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", lambda self, data, e=engine: e)
        row = _graph_json(monkeypatch, capsys, folder)["model.engine"]
        assert {k: row[k] for k in want} == want and row["format"] == "engine"
        code, out, _ = run(monkeypatch, capsys, "info", str(folder), "--graph")
        text = " ".join(out.split())
        assert code == 0 and ("graph model.engine (TensorRT engine): 3 layers: CaskConvolution 2, Myelin 1" in text
                              if inspected else "2 layers (names only: the engine was built without detailed" in text)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no TensorRT: the row says so, exit 0
    row = _graph_json(monkeypatch, capsys, folder)["model.engine"]
    assert row["error"] == "needs TensorRT (TensorRT is not installed)"
    code, out, _ = run(monkeypatch, capsys, "info", str(folder), "--graph")
    assert code == 0 and "graph model.engine (TensorRT engine): needs TensorRT (TensorRT is not installed)" in " ".join(out.split())
    assert "graph model.onnx (fp32): 3 nodes, 3 compute in float32" in " ".join(out.split())



def test_a_long_operator_table_folds_its_tail_in_text_only() -> None:
    """Up to MAX_OP_ROWS rows per table; the rarest types beyond them are one row (JSON keeps them all)."""
    from rich.console import Console

    from pvt_deploy.cli.info import MAX_OP_ROWS, render_graphs

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    count = MAX_OP_ROWS + 5
    # Op0 has count nodes, Op1 count - 1, ...: the fold keeps the most frequent
    nodes = [helper.make_node(f"Op{i}", ["x"], [f"y{i}_{j}"], domain="example.custom")
             for i in range(count) for j in range(count - i)]
    graph = helper.make_graph(nodes, "g", [x], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)])
    summary = graph_summary(model)
    assert len(summary["ops"]) == count and summary["unknown"] == len(nodes)
    console = Console(record=True, width=100)
    render_graphs({"graph": [{"file": "m.onnx", "format": "onnx", **summary}], "files": []}, console)
    text = console.export_text()
    shown = MAX_OP_ROWS - 1
    assert f"│ Op{shown - 1} " in text and f"│ Op{shown} " not in text
    rest = sum(count - i for i in range(shown, count))
    assert f"│ {count - shown} more types │ {rest} │ --json lists them │" in " ".join(text.split())
    assert f"m.onnx (fp32): {len(nodes)} nodes, {len(nodes)} of unknown type" in " ".join(text.split())


@pytest.fixture(scope="module")
def toy_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graph pvt-deploy did not make: a plain torch.onnx.export of a Conv+Relu+GlobalAveragePool+Gemm net
    with a dynamic batch, no pvt-deploy metadata in it and no manifest.json beside it."""
    import torch
    from torch import nn

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1))

    path = tmp_path_factory.mktemp("foreign") / "toy.onnx"
    torch.onnx.export(Toy().eval(), (torch.zeros(1, 3, 16, 16),), str(path), input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the JSON")

    return json.loads(text, parse_constant=refuse)


def test_info_describes_an_onnx_file_another_tool_made(toy_onnx: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """It exited 2 ('no pvt-deploy metadata'): it shows what the file says of itself, and what cannot use it."""
    import hashlib

    model = onnx.load(str(toy_onnx))
    code, out, err = run(monkeypatch, capsys, "info", str(toy_onnx), "--json")
    assert code == 0, err
    facts = _strict_json(out)
    assert facts["kind"] == "ONNX file (not made by pvt-deploy)" and facts["model"] is None and "graph" not in facts
    assert facts["inputs"] == [{"name": "images", "dtype": "float32", "shape": ["batch", 3, 16, 16]}]
    assert facts["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 4]}]
    foreign = facts["foreign"]
    assert foreign["opsets"] == {"ai.onnx": 17} and foreign["ir_version"] == model.ir_version
    assert foreign["producer"] == {"name": "pytorch", "version": model.producer_version}
    (row,) = facts["files"]
    assert row["bytes"] == toy_onnx.stat().st_size and row["precision"] == "fp32"
    assert row["sha256"] == hashlib.sha256(toy_onnx.read_bytes()).hexdigest()
    assert [(b["backend"], b["available"]) for b in facts["backends"]] == [("onnx", False)]
    code, out, err = run(monkeypatch, capsys, "info", str(toy_onnx))
    text = " ".join(out.split())
    assert code == 0 and "Traceback" not in err
    assert "input images float32 [batch, 3, 16, 16]" in text and "output logits float32 [batch, 4]" in text
    assert f"opset ai.onnx 17; IR {model.ir_version}; producer pytorch {model.producer_version}" in text
    assert "so infer, val, bench and check cannot run it and export cannot convert it" in text
    assert "model None" not in text and "weights:" not in text and "dynamic:" not in text and "graph toy.onnx" not in text


def test_info_graph_of_an_onnx_file_another_tool_made(toy_onnx: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    model = onnx.load(str(toy_onnx))
    ops = Counter(n.op_type for n in model.graph.node)
    assert set(ops) == {"Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"}
    row = _graph_json(monkeypatch, capsys, toy_onnx)["toy.onnx"]
    assert row["ops"] == dict(ops) and row["nodes"] == len(model.graph.node) == 5
    assert row["producer"]["name"] == "pytorch" and row["compute"] == {"float32": 5}
    assert row["parameters"] == 8 * 3 * 3 * 3 + 8 + 8 * 4 + 4
    code, out, err = run(monkeypatch, capsys, "info", str(toy_onnx), "--graph")
    text = " ".join(out.split())
    assert code == 0, err
    assert "graph toy.onnx (fp32): 5 nodes, 5 compute in float32" in text and "│ Gemm │ 1 │ float32 1 │" in text


def test_info_of_a_truncated_onnx_file_is_one_line(toy_onnx: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(toy_onnx.read_bytes()[: toy_onnx.stat().st_size // 2])
    for extra in ((), ("--graph",), ("--json",)):
        code, out, err = run(monkeypatch, capsys, "info", str(cut), *extra)
        assert code == 2 and out == "" and err.startswith(f"error: {cut}: not a readable ONNX model (")
        assert err.count("\n") == 1


def _save_graph_with_undeclared_shapes(path: Path) -> None:
    """Another tool's graph whose outputs are a tensor of named dims y, a sequence s, a tensor of unknown
    rank u and a scalar m."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("SequenceConstruct", ["y"], ["s"]),
             helper.make_node("Identity", ["y"], ["u"]), helper.make_node("ReduceMax", ["y"], ["m"], keepdims=0)]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2]),
                                                helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None),
                                                helper.make_tensor_value_info("u", TensorProto.FLOAT, None),
                                                helper.make_tensor_value_info("m", TensorProto.FLOAT, [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_info_of_another_tools_graph_with_a_sequence_output(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A value that is not a tensor (sklearn-onnx's ZipMap writes a sequence of maps) has no element type:
    its dtype is its kind ('sequence'), not a KeyError out of numpy's type table. It has no shape, nor has
    a tensor of unknown rank: shape null and '(shape not declared)', not [], which is a scalar's (and
    read as one in the text and the JSON)."""
    _save_graph_with_undeclared_shapes(tmp_path / "seq.onnx")
    code, out, err = run(monkeypatch, capsys, "info", str(tmp_path / "seq.onnx"), "--json")
    assert code == 0, err
    assert _strict_json(out)["outputs"] == [{"name": "y", "dtype": "float32", "shape": ["n", 2]},
                                            {"name": "s", "dtype": "sequence", "shape": None},
                                            {"name": "u", "dtype": "float32", "shape": None},
                                            {"name": "m", "dtype": "float32", "shape": []}]
    code, out, err = run(monkeypatch, capsys, "info", str(tmp_path / "seq.onnx"))
    assert code == 0, err
    for line in ("output  s sequence (shape not declared)", "output  u float32 (shape not declared)",
                 "output  m float32 []"):
        assert line in out, out


def test_tensor_specs_in_the_json_read_back(det_artifact: Artifact, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Each input and output pvt-deploy writes as JSON reads back as a TensorSpec that writes it again:
    info --json of another tool's graph (shape null for a sequence and an unknown rank: from_json raised
    TypeError on it; a scalar's [] stays ()), an export's manifest.json, and its info --json. (bench --json
    writes no tensor spec: its input_shape is the array's.)"""
    _save_graph_with_undeclared_shapes(tmp_path / "seq.onnx")
    code, out, err = run(monkeypatch, capsys, "info", str(tmp_path / "seq.onnx"), "--json")
    assert code == 0, err
    foreign = _strict_json(out)
    code, out, err = run(monkeypatch, capsys, "info", str(det_artifact.folder), "--json")
    assert code == 0, err
    export = _strict_json(out)
    manifest = json.loads((det_artifact.folder / "manifest.json").read_text())
    written = [s for facts in (foreign, export, manifest) for key in ("inputs", "outputs") for s in facts[key]]
    assert len(written) == 1 + 4 + 2 * (1 + 2)
    for spec in written:
        read = TensorSpec.from_json(spec)
        assert read.to_json() == spec and json.loads(json.dumps(read.to_json())) == spec
    shapes = {s["name"]: TensorSpec.from_json(s).shape for s in foreign["outputs"]}
    assert shapes == {"y": ("n", 2), "s": None, "u": None, "m": ()}


def test_info_of_another_tools_graph_of_strings_says_string(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A text model's string input and vocabulary (a tokenizer graph): ONNX's 'string', not numpy's 'object'
    for their Python-object array, and the vocabulary's bytes, not 8 bytes (a pointer) a word."""
    text = helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])
    vocab = helper.make_tensor("vocab", TensorProto.STRING, [3], [b"cat", b"dog", b"bird"])
    nodes = [helper.make_node("Concat", ["vocab", "text"], ["all"], axis=0)]
    graph = helper.make_graph(nodes, "g", [text], [helper.make_tensor_value_info("all", TensorProto.STRING, ["m"])],
                              initializer=[vocab])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "words.onnx"))
    code, out, err = run(monkeypatch, capsys, "info", str(tmp_path / "words.onnx"), "--graph", "--json")
    assert code == 0, err
    report = _strict_json(out)
    assert report["inputs"] == [{"name": "text", "dtype": "string", "shape": ["n"]}]
    assert report["outputs"] == [{"name": "all", "dtype": "string", "shape": ["m"]}]
    row = report["graph"][0]
    assert row["initializers"]["by_dtype"] == {"string": {"count": 1, "bytes": 10, "values": 3}}
    assert row["types_by_op"] == {"Concat": {"string": 1}}
    code, out, err = run(monkeypatch, capsys, "info", str(tmp_path / "words.onnx"), "--graph")
    assert code == 0 and "input   text string [n]" in out and "1 initializer, 10 B (string 10 B)" in out, err
    assert "object" not in out


def test_export_of_another_tools_onnx_does_not_say_infer_runs_it(toy_onnx: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """export --model toy.onnx ended "infer, check and bench run it as it is", which all three refuse."""
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(toy_onnx))
    assert code == 2 and "Traceback" not in err
    text = " ".join(err.split())
    assert "not made by pvt-deploy" in text and "infer, check and bench run it" not in text, err
