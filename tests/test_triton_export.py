"""Triton model repository export: every generated config.pbtxt is parsed with Triton's own ModelConfig
protobuf (from tritonclient) and checked against the ONNX graph it was made from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pvt_deploy.utils import onnx_model

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from pvt_deploy.errors import InputError  # noqa: E402
from pvt_deploy.export.triton import MANIFEST_PARAMETER, export_triton  # noqa: E402
from pvt_deploy.manifest import ONNX_METADATA_KEY, essentials, file_entry, write_manifest  # noqa: E402

ONNX_TO_TRITON = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.INT32: "TYPE_INT32",
                  TensorProto.FLOAT16: "TYPE_FP16", TensorProto.INT64: "TYPE_INT64"}

Spec = tuple[str, int, list[Any]]  # (name, onnx elem type, shape with str for symbolic dims)

CLASSIFY: list[Spec] = [("logits", TensorProto.FLOAT, ["batch", 5])]
DETECT_HOST: list[Spec] = [("boxes", TensorProto.FLOAT, ["batch", "num_boxes", 4]),
                           ("scores", TensorProto.FLOAT, ["batch", "num_boxes", 5])]
DETECT_GRAPH: list[Spec] = [("num_dets", TensorProto.INT32, ["batch", 1]),
                            ("det_boxes", TensorProto.FLOAT, ["batch", 100, 4]),
                            ("det_scores", TensorProto.FLOAT, ["batch", 100]),
                            ("det_classes", TensorProto.INT32, ["batch", 100])]
SEGMENT_MASK: list[Spec] = [("seg_mask", TensorProto.INT32, ["batch", "height", "width"])]


def model_config_pb2() -> Any:
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is needed to parse config.pbtxt")
    from tritonclient.grpc import model_config_pb2 as pb2

    return pb2


def parse_config(path: Path) -> Any:
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2().ModelConfig())


def make_graph(path: Path, outputs: list[Spec], *, input_shape: list[Any] | None = None,
               task: str = "classify", metadata: bool = False, external: bool = False) -> Path:
    """A small ONNX file with the contract's input and the given outputs (values are irrelevant here:
    the export reads names, types and shapes only)."""
    shape = input_shape or ["batch", 3, "height", "width"]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)]
    outs = [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs]
    nodes, inits = [], []
    for i, (name, elem, _) in enumerate(outputs):
        # Each output is a constant of the right type, plus a dependency on the input so it is used.
        inits.append(helper.make_tensor(f"c{i}", elem, [1], [0]))
        nodes.append(helper.make_node("Identity", [f"c{i}"], [name]))
    nodes.append(helper.make_node("Identity", ["images"], ["images_copy"]))
    if external:
        import numpy as np

        weights = onnx.numpy_helper.from_array(np.arange(4096, dtype=np.float32), "big")
        inits.append(weights)
    graph = helper.make_graph(nodes, "g", inputs, outs, initializer=inits)
    model = onnx_model(graph)
    if metadata:
        helper.set_model_props(model, {ONNX_METADATA_KEY: json.dumps({"model": "lone", "task": task})})
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, path)
    return path


def make_artifact(folder: Path, outputs: list[Spec], *, task: str = "classify",
                  input_shape: list[Any] | None = None, extra: dict[str, Any] | None = None,
                  external: bool = False) -> Path:
    """An export folder as docs/ARCHITECTURE.md describes it: model.onnx + manifest.json."""
    onnx_path = make_graph(folder / "model.onnx", outputs, input_shape=input_shape, external=external)
    shape = input_shape or ["batch", 3, "height", "width"]
    manifest: dict[str, Any] = {
        "model": "pvt_v2_b0", "backbone": "pvt_v2_b0", "task": task, "classes": [f"c{i}" for i in range(5)],
        "weights": {"source": None, "sha256": None, "random_init": True},
        "inputs": [{"name": "images", "dtype": "float32", "shape": shape}],
        "outputs": [{"name": n, "dtype": "int32" if t == TensorProto.INT32 else "float32", "shape": s}
                    for n, t, s in outputs],
        "preprocess": {"color": "RGB", "layout": "NCHW", "dtype": "float32", "normalize_in_graph": True,
                       "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                       "resize": "resize_crop", "imgsz": [224, 224], "stride": 32},
        "postprocess": {"nms": "host", "score_threshold": 0.05},
        "dynamic": {"batch": [1, 8], "height": [32, 1344], "width": [32, 1344]},
        "files": {"model.onnx": file_entry(onnx_path, "fp32")},
        "versions": {"pvt-deploy": "0.1.0"},
    }
    manifest.update(extra or {})
    write_manifest(folder, manifest)
    return folder


def check_against_graph(config: Any, graph: Path, *, batched: bool) -> None:
    """The contract of the export: names, dtypes, ranks and the batch dimension follow the ONNX graph."""
    model = onnx.load(str(graph), load_external_data=False)
    for tensors, configured in ((model.graph.input, config.input), (model.graph.output, config.output)):
        assert [t.name for t in tensors] == [c.name for c in configured]
        for t, c in zip(tensors, configured, strict=True):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.type.tensor_type.shape.dim]
            assert model_config_pb2().DataType.Name(c.data_type) == ONNX_TO_TRITON[t.type.tensor_type.elem_type]
            if batched:
                assert dims[0] == -1, "a batched Triton model needs a dynamic first dim"
                assert list(c.dims) == dims[1:]
            else:
                assert list(c.dims) == dims


@pytest.mark.parametrize("outputs,task", [(CLASSIFY, "classify"), (DETECT_HOST, "detect"),
                                          (DETECT_GRAPH, "detect"), (SEGMENT_MASK, "segment")])
def test_onnx_config_matches_graph(tmp_path: Path, outputs: list[Spec], task: str) -> None:
    art = make_artifact(tmp_path / "art", outputs, task=task)
    model_dir = export_triton(art, tmp_path / "repo", max_batch=8, instances=2, kind="GPU")
    assert model_dir == tmp_path / "repo" / "pvt_v2_b0"
    cfg = parse_config(model_dir / "config.pbtxt")
    pb2 = model_config_pb2()

    assert cfg.name == "pvt_v2_b0" and cfg.backend == "onnxruntime" and cfg.max_batch_size == 8
    check_against_graph(cfg, art / "model.onnx", batched=True)
    assert len(cfg.instance_group) == 1
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU
    assert cfg.HasField("dynamic_batching")
    # no preferred_batch_size unless asked: Triton's batcher guide advises one only where that size was
    # measured to run much faster (the batcher already forms the largest batch it can)
    assert list(cfg.dynamic_batching.preferred_batch_size) == []
    assert "preferred_batch_size" not in (model_dir / "config.pbtxt").read_text()
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert not cfg.HasField("optimization")

    # The served file is the artifact's graph, byte for byte; no temporary files are left behind.
    assert (model_dir / "1" / "model.onnx").read_bytes() == (art / "model.onnx").read_bytes()
    assert not list(model_dir.rglob("*.part*"))

    # The manifest travels in the config (for remote clients) and beside it (for people and tools).
    embedded = json.loads(cfg.parameters[MANIFEST_PARAMETER].string_value)
    original = json.loads((art / "manifest.json").read_text())
    assert {k: embedded[k] for k in essentials(original)} == essentials(original)
    assert embedded["triton"]["backend"] == "onnxruntime" and embedded["triton"]["max_batch_size"] == 8
    assert embedded["triton"]["source_sha256"] == original["files"]["model.onnx"]["sha256"]
    beside = json.loads((model_dir / "manifest.json").read_text())
    assert beside["task"] == task and beside["triton"] == embedded["triton"]


def test_unbatched_and_static_graphs(tmp_path: Path) -> None:
    # max_batch=0: Triton does not batch, dims are the full graph dims.
    art = make_artifact(tmp_path / "art", DETECT_HOST, task="detect")
    cfg = parse_config(export_triton(art, tmp_path / "repo", max_batch=0, name="nobatch") / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    check_against_graph(cfg, art / "model.onnx", batched=False)

    # A static graph (batch fixed at 1) cannot be batched by Triton: exported unbatched, and the config says why.
    static = make_artifact(tmp_path / "static", [("logits", TensorProto.FLOAT, [1, 5])],
                           input_shape=[1, 3, 224, 224])
    model_dir = export_triton(static, tmp_path / "repo", max_batch=8, name="static")
    text = (model_dir / "config.pbtxt").read_text()
    assert "note: max_batch_size 0" in text
    cfg = parse_config(model_dir / "config.pbtxt")
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [1, 3, 224, 224]
    check_against_graph(cfg, static / "model.onnx", batched=False)


def test_fp16_accelerator_and_cpu_kind(tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "art", CLASSIFY)
    cfg = parse_config(export_triton(art, tmp_path / "repo", trt_fp16_accelerator=True, kind="AUTO",
                                     max_queue_delay_us=500, preferred_batch_sizes=[2, 4, 64])
                       / "config.pbtxt")
    accel = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert len(accel) == 1 and accel[0].name == "tensorrt"
    # One TensorRT profile covering every batch the dynamic batcher forms (1..max_batch_size) and the sizes
    # the preprocessing makes (the export's range up to imgsz 224), as the local TensorRT EP gets: without
    # it the EP built an engine for the first request's shape and rebuilt it for each larger batch.
    assert dict(accel[0].parameters) == {"precision_mode": "FP16", "trt_profile_min_shapes": "images:1x3x32x32",
                                         "trt_profile_opt_shapes": "images:1x3x224x224",
                                         "trt_profile_max_shapes": "images:8x3x224x224"}
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]  # sizes above max_batch dropped
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_AUTO
    triton = json.loads(cfg.parameters[MANIFEST_PARAMETER].string_value)["triton"]
    assert triton["precision"] == "fp16"
    # the client keeps its input sizes inside the profile (the triton:// backend's `profiles`)
    assert triton["tensorrt_profiles"] == [{"input": "images", "min": [1, 3, 32, 32], "opt": [1, 3, 224, 224],
                                            "max": [8, 3, 224, 224]}]
    cfg = parse_config(export_triton(art, tmp_path / "mb4", trt_fp16_accelerator=True, max_batch=4) / "config.pbtxt")
    params = dict(cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters)
    assert params["trt_profile_max_shapes"] == "images:4x3x224x224"  # Triton's max_batch_size, not the graph's 8
    cfg = parse_config(export_triton(art, tmp_path / "mb0", trt_fp16_accelerator=True, max_batch=0) / "config.pbtxt")
    params = dict(cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters)
    assert params["trt_profile_max_shapes"] == "images:8x3x224x224"  # unbatched: the client sends the graph's range
    assert "tensorrt_profiles" not in json.loads(parse_config(export_triton(art, tmp_path / "plain") / "config.pbtxt")
                                                 .parameters[MANIFEST_PARAMETER].string_value)["triton"]

    cfg = parse_config(export_triton(art, tmp_path / "cpu", kind="CPU", dynamic_batching=False) / "config.pbtxt")
    assert cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_CPU
    assert not cfg.HasField("dynamic_batching") and cfg.max_batch_size == 8

    with pytest.raises(InputError, match="GPU"):
        export_triton(art, tmp_path / "x", kind="CPU", trt_fp16_accelerator=True)


def test_the_accelerator_builds_an_int8_graph_in_int8(tmp_path: Path) -> None:
    """``trt_fp16_accelerator`` on an INT8 Q/DQ graph (``export(..., int8=True, triton={"trt_fp16_accelerator":
    True})``) wrote precision_mode FP16 and labelled the model fp16: TensorRT builds a network with Q/DQ
    layers only in INT8 mode ('Int8 precision has been set for a layer ... but int8 is not configured in the
    builder'), so the model failed to load, and ``--precision int8`` against it was refused as 'serves a
    fp16 model'. An INT8 graph gets precision_mode INT8 (trt_int8_enable) and stays int8."""
    art = make_artifact(tmp_path / "art", CLASSIFY)
    make_graph(art / "model.int8.trt.onnx", CLASSIFY)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["model.int8.trt.onnx"] = file_entry(art / "model.int8.trt.onnx", "int8", flavour="trt")
    write_manifest(art, manifest)
    cfg = parse_config(export_triton(art, tmp_path / "repo", source="model.int8.trt.onnx", trt_fp16_accelerator=True)
                       / "config.pbtxt")
    params = dict(cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters)
    assert params["precision_mode"] == "INT8" and "trt_profile_max_shapes" in params
    assert json.loads(cfg.parameters[MANIFEST_PARAMETER].string_value)["triton"]["precision"] == "int8"


def test_the_accelerator_is_refused_the_cpu_flavour_of_int8(tmp_path: Path) -> None:
    """``trt_fp16_accelerator`` on model.int8.onnx, the CPU flavour (uint8 asymmetric Q/DQ, MatMulInteger and
    DynamicQuantizeLinear), wrote precision_mode INT8 for a graph TensorRT's parser does not take, which the
    server would only find out at load. It is refused at export, as a TensorRT engine build of that file is;
    served without the accelerator it is fine."""
    art = make_artifact(tmp_path / "art", CLASSIFY)
    make_graph(art / "model.int8.onnx", CLASSIFY)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["model.int8.onnx"] = file_entry(art / "model.int8.onnx", "int8", flavour="cpu")
    write_manifest(art, manifest)
    with pytest.raises(InputError, match="cannot build model.int8.onnx, the CPU flavour of INT8") as raised:
        export_triton(art, tmp_path / "repo", source="model.int8.onnx", trt_fp16_accelerator=True)
    assert "model.int8.trt.onnx" in str(raised.value.hint)
    assert not (tmp_path / "repo").exists()
    cfg = parse_config(export_triton(art, tmp_path / "repo", source="model.int8.onnx") / "config.pbtxt")
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator


def test_tensorrt_plan(tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "art", DETECT_GRAPH, task="detect")
    make_graph(art / "model.fp16.onnx", DETECT_GRAPH)
    (art / "model.engine").write_bytes(b"not a real plan, only copied")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["model.fp16.onnx"] = file_entry(art / "model.fp16.onnx", "fp16")
    manifest["files"]["model.engine"] = file_entry(art / "model.engine", "fp16", source="model.fp16.onnx")
    manifest["tensorrt"] = {"version": "10.13.0", "gpu": "NVIDIA L4", "precision": "fp16", "source": "model.fp16.onnx",
                            "profiles": [{"input": "images", "min": [1, 3, 320, 320], "opt": [2, 3, 640, 640],
                                          "max": [4, 3, 1344, 1344]}]}
    write_manifest(art, manifest)

    repo = tmp_path / "repo"
    export_triton(art, repo, backend="onnx", name="det")  # then switch the same model to the engine
    model_dir = export_triton(art, repo, backend="trt", name="det", max_batch=8)
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["model.plan"]
    assert (model_dir / "1" / "model.plan").read_bytes() == (art / "model.engine").read_bytes()
    text = (model_dir / "config.pbtxt").read_text()
    assert "TensorRT 10.13.0" in text and "clamped" in text
    cfg = parse_config(model_dir / "config.pbtxt")
    assert cfg.backend == "tensorrt" and cfg.max_batch_size == 4  # the engine profile's max batch
    check_against_graph(cfg, art / "model.fp16.onnx", batched=True)
    embedded = json.loads(cfg.parameters[MANIFEST_PARAMETER].string_value)
    assert embedded["triton"]["precision"] == "fp16" and embedded["tensorrt"]["version"] == "10.13.0"

    assert cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_GPU  # an engine's default
    with pytest.raises(InputError, match="GPU"):
        export_triton(art, repo, backend="trt", kind="CPU")
    with pytest.raises(InputError, match="accelerator"):
        export_triton(art, repo, backend="trt", trt_fp16_accelerator=True)


@pytest.mark.parametrize(("tf32", "cc", "served_as"), [(True, "8.9", "tf32"), (None, "8.0", "tf32"), (False, "8.9", "fp32"),
                                                       (True, "7.5", "fp32")])
def test_a_served_fp32_engine_says_what_it_computes_in(tmp_path: Path, tf32: bool | None, cc: str,
                                                       served_as: str) -> None:
    """An FP32 engine TensorRT was let use TF32 in (``export --tf32``, or an older build whose manifest does
    not say) computes in TF32 on an Ampere+ GPU: the runtime, ``info`` and the export table report it as
    ``tf32`` (runtimes.tensorrt.engine_precision), but the same engine served by Triton (``--format triton
    --triton-backend trt``) declared "fp32" in its model's manifest, which the triton:// client reports."""
    art = make_artifact(tmp_path / "art", DETECT_GRAPH, task="detect")
    (art / "model.engine").write_bytes(b"not a real plan, only copied")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["model.engine"] = file_entry(art / "model.engine", "fp32", source="model.onnx")
    manifest["tensorrt"] = {"version": "10.13.0", "gpu": "NVIDIA L4", "compute_capability": cc, "precision": "fp32",
                            "source": "model.onnx", **({"tf32": tf32} if tf32 is not None else {})}
    write_manifest(art, manifest)
    model_dir = export_triton(art, tmp_path / "repo", backend="trt", name="det")
    embedded = json.loads(parse_config(model_dir / "config.pbtxt").parameters[MANIFEST_PARAMETER].string_value)
    assert embedded["triton"]["precision"] == served_as


def test_default_onnx_model_loads_on_any_server_and_shares_the_exports_bytes(tmp_path: Path) -> None:
    """An onnxruntime model defaults to KIND_AUTO (a CPU-only tritonserver refuses KIND_GPU); its file is
    a hard link to the export's, which keeps the served bytes when the export is replaced by rename."""
    from pvt_deploy.utils.files import atomic_write_bytes

    art = make_artifact(tmp_path / "art", CLASSIFY)
    served = export_triton(art, tmp_path / "repo") / "1" / "model.onnx"
    cfg = parse_config(served.parent.parent / "config.pbtxt")
    assert cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_AUTO
    original = (art / "model.onnx").read_bytes()
    assert served.stat().st_ino == (art / "model.onnx").stat().st_ino and served.read_bytes() == original
    atomic_write_bytes(art / "model.onnx", b"a re-export")
    assert served.read_bytes() == original


def test_lone_onnx_and_external_data(tmp_path: Path) -> None:
    lone = make_graph(tmp_path / "lone" / "graph.onnx", CLASSIFY, metadata=True)
    model_dir = export_triton(lone, tmp_path / "repo")
    assert model_dir.name == "lone"  # name from the ONNX metadata
    embedded = json.loads(parse_config(model_dir / "config.pbtxt").parameters[MANIFEST_PARAMETER].string_value)
    assert embedded["task"] == "classify" and embedded["triton"]["source"] == "graph.onnx"

    art = make_artifact(tmp_path / "ext", CLASSIFY, external=True)
    model_dir = export_triton(art, tmp_path / "repo", name="ext")
    assert (model_dir / "1" / "model.onnx.data").read_bytes() == (art / "model.onnx.data").read_bytes()


def test_errors_are_one_line_input_errors(tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "art", CLASSIFY)
    with pytest.raises(InputError, match="model.engine"):
        export_triton(art, tmp_path / "repo", backend="trt")
    with pytest.raises(InputError, match="name"):
        export_triton(art, tmp_path / "repo", name="bad/name")
    with pytest.raises(InputError):
        export_triton(tmp_path / "nowhere", tmp_path / "repo")
    with pytest.raises(InputError):
        export_triton(art, tmp_path / "repo", backend="tflite")  # type: ignore[arg-type]
    (art / "model.onnx").write_bytes((art / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(InputError, match="sha256"):
        export_triton(art, tmp_path / "repo")
    assert not (tmp_path / "repo").exists(), "nothing is written when the export fails"


KILLED_TRITON_EXPORT = """
import os, signal, sys
from pvt_deploy.export import triton
artifact, repo, when = sys.argv[1:4]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if when == "config":  # after the model file and the manifest, before config.pbtxt
    triton.atomic_write_text = die
else:  # mid-swap: the model folder set aside, the new one not yet in its place
    rename = os.rename
    def rename_then_die(src, dst, *args, **kwargs):
        rename(src, dst, *args, **kwargs)
        if ".pvt-triton-old-" in os.fspath(dst):
            die()
    os.rename = rename_then_die
triton.export_triton(artifact, repo)
"""


def served_sha(model_dir: Path) -> set[str]:
    """The sha256 of the model file as the file, the manifest and the config's embedded manifest give it
    (one value where the model folder agrees with itself, as a server and `pvt-deploy info` need)."""
    from pvt_deploy.utils.files import sha256_file

    manifest = json.loads((model_dir / "manifest.json").read_text())
    embedded = json.loads(parse_config(model_dir / "config.pbtxt").parameters[MANIFEST_PARAMETER].string_value)
    return {sha256_file(model_dir / "1" / "model.onnx"), manifest["files"]["1/model.onnx"]["sha256"],
            embedded["triton"]["source_sha256"]}


@pytest.mark.parametrize("when", ["config", "swap"])
def test_a_killed_export_leaves_the_previous_model_whole(tmp_path: Path, when: str) -> None:
    """An export killed (kill -9, out of memory) between writing 1/model.onnx and config.pbtxt left a
    model whose files disagreed (the new graph, the old config: `info` said MISMATCH and a server would
    serve one graph described as another) until the next export. The model folder is now replaced as a
    whole: a killed export leaves the previous one as it was, also when killed mid-swap, and the next
    export clears what it left, keeping the user's files and other versions."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    model_dir = export_triton(make_artifact(tmp_path / "a", CLASSIFY), repo)
    (model_dir / "README.txt").write_text("the user's notes")
    (model_dir / "2").mkdir()
    (model_dir / "2" / "model.onnx").write_bytes(b"another version")
    before = served_sha(model_dir)
    assert len(before) == 1
    other = make_artifact(tmp_path / "b", DETECT_HOST, task="detect")
    done = subprocess.run([sys.executable, "-c", KILLED_TRITON_EXPORT, str(other), str(repo), when],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    if when == "config":
        assert served_sha(model_dir) == before
        assert (model_dir / "README.txt").read_text() == "the user's notes"
    else:
        assert not model_dir.exists()  # killed in the instant between the two renames
    after = export_triton(other, repo)
    assert served_sha(after) == {json.loads((other / "manifest.json").read_text())["files"]["model.onnx"]["sha256"]}
    assert sorted(p.name for p in repo.iterdir()) == ["pvt_v2_b0"]  # nothing set aside is left
    assert sorted(p.name for p in after.iterdir()) == ["1", "2", "README.txt", "config.pbtxt", "manifest.json"]
    assert (after / "README.txt").read_text() == "the user's notes"
    assert (after / "2" / "model.onnx").read_bytes() == b"another version"


def test_the_int8_flavour_asked_for_is_the_one_served(tmp_path: Path) -> None:
    """``export --model exports/x --int8 --int8-flavour trt --format triton`` on an export that held both
    INT8 flavours served model.int8.onnx, the CPU flavour (the first that existed), though docs/docker.md
    says --int8-flavour trt serves model.int8.trt.onnx."""
    from pvt_deploy.export import export

    folder = export("pvt_v2_b0-cls", tmp_path / "x", imgsz=32, parity=False, int8=True)
    assert (folder / "model.int8.onnx").is_file() and (folder / "model.int8.trt.onnx").is_file()
    for flavour, served in (("trt", "model.int8.trt.onnx"), ("cpu", "model.int8.onnx"), ("both", "model.int8.onnx")):
        export(folder, format="triton", triton_repo=tmp_path / "repo", int8=True, int8_flavour=flavour, parity=False)
        model_dir = tmp_path / "repo" / "pvt_v2_b0-cls"
        triton = json.loads((model_dir / "manifest.json").read_text())["triton"]
        assert (flavour, triton["source"]) == (flavour, served)
        assert triton["source_sha256"] == json.loads((folder / "manifest.json").read_text())["files"][served]["sha256"]


FULL_DISK_TRITON_EXPORT = """
import resource, sys
from pvt_deploy.errors import InputError
from pvt_deploy.export.triton import export_triton
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))  # the manifest and config are larger
try:
    export_triton(sys.argv[1], sys.argv[2])
except InputError as e:
    print(e)
"""


def test_a_full_disk_names_the_triton_model_and_keeps_the_previous_one(tmp_path: Path) -> None:
    """A full disk (here a file size limit) while the Triton model was written ended the CLI's export with
    'cannot write the export to exports/x' (the export folder, which was fine) or, from Python, an
    OSError, and left the model half written. It is one line naming the Triton model; the previous model
    stays whole."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    model_dir = export_triton(make_artifact(tmp_path / "a", CLASSIFY), repo)
    before = served_sha(model_dir)
    done = subprocess.run([sys.executable, "-c", FULL_DISK_TRITON_EXPORT,
                           str(make_artifact(tmp_path / "b", DETECT_HOST, task="detect")), str(repo)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cannot write the Triton model {model_dir}: File too large; the previous one " \
                                  "is unchanged", done.stderr
    assert served_sha(model_dir) == before
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt", "manifest.json"]


SLOW_TRITON_EXPORT = """
import sys
from pvt_deploy.export import triton
write = triton.atomic_write_json
def held_write(*args, **kwargs):  # the model file is in the staging folder; the manifest and config not yet
    print("staged", flush=True)
    sys.stdin.readline()  # until the test says go on
    write(*args, **kwargs)
triton.atomic_write_json = held_write
triton.export_triton(sys.argv[1], sys.argv[2])
"""


def test_two_exports_of_one_triton_model_at_once_leave_a_whole_model(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The staging folder is inside the model folder: a second export of the model that swapped while the
    first was writing took the first's staging folder away with the old model, and the first then swapped
    in a folder holding only what it wrote after that (a config and manifest, no 1/model.onnx). The
    repository's lock is held from staging to swap, so the exports take turns: the second finds the lock
    held while the first is stopped mid-staging, and gets it once the first has swapped its model in."""
    import subprocess
    import sys

    from pvt_deploy.export import swap

    repo = tmp_path / "repo"
    model_dir = export_triton(make_artifact(tmp_path / "a", CLASSIFY), repo)
    second = make_artifact(tmp_path / "c", SEGMENT_MASK, task="segment")
    slow = subprocess.Popen([sys.executable, "-c", SLOW_TRITON_EXPORT,
                             str(make_artifact(tmp_path / "b", DETECT_HOST, task="detect")), str(repo)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock, seen = swap.lock, []

    def lock_of_the_second(path: Any, *, wait: bool = True) -> int | None:
        if Path(path) != repo or not wait:
            return lock(path, wait=wait)
        fd = lock(path, wait=False)
        if fd is None:  # the slow export holds it, stopped mid-staging: let it go on, and wait for the lock
            seen.append("held")
            assert slow.stdin is not None
            slow.stdin.write("go on\n")
            slow.stdin.flush()
            fd = lock(path)
            seen.append(json.loads((model_dir / "manifest.json").read_text())["task"])  # what is served by then
        return fd

    try:
        assert slow.stdout is not None and slow.stdout.readline().strip() == "staged"
        monkeypatch.setattr(swap, "lock", lock_of_the_second)
        export_triton(second, repo)
        _, err = slow.communicate("go on\n", timeout=60)  # a slow export still stopped (not locked out) ends
    finally:
        slow.kill()
    assert slow.returncode == 0, err
    assert seen == ["held", "detect"]  # locked out while the first staged; let in once it had swapped
    assert len(served_sha(model_dir)) == 1  # one graph, described as itself
    assert json.loads((model_dir / "manifest.json").read_text())["task"] == "segment"  # the second swapped last
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt", "manifest.json"]
    assert sorted(p.name for p in repo.iterdir()) == ["pvt_v2_b0"]


def test_a_triton_model_that_would_be_its_export_folder_is_refused(tmp_path: Path) -> None:
    """``export -o exports/pvt_v2_b0 --format triton --triton-repo exports`` named the Triton model folder
    after the model, which is the export folder itself: the Triton manifest replaced the export's (and the
    swap dropped the export's other files). It is refused, and the export is left as it was."""
    art = make_artifact(tmp_path / "pvt_v2_b0", CLASSIFY)
    before = sorted((p.name, p.read_bytes()) for p in art.iterdir())
    with pytest.raises(InputError, match="would replace the export folder"):
        export_triton(art, tmp_path)
    with pytest.raises(InputError, match="would replace the export folder"):
        export_triton(art, tmp_path / "pvt_v2_b0" / "..", name="pvt_v2_b0")
    assert sorted((p.name, p.read_bytes()) for p in art.iterdir()) == before


def test_one_export_reads_the_served_graph_once_to_hash_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exporting a Triton model checked the served file's sha256 against the manifest, then hashed it again
    for ``triton.source_sha256``: two full reads of a 100-250 MB graph. One export reads it once (a changed
    file is still refused: test_errors_are_one_line_input_errors)."""
    from test_ort_providers import _hashes_of

    art = make_artifact(tmp_path / "art", CLASSIFY)
    hashed = _hashes_of(art / "model.onnx", monkeypatch)
    model_dir = export_triton(art, tmp_path / "repo")
    assert len(hashed) == 1
    embedded = json.loads(parse_config(model_dir / "config.pbtxt").parameters[MANIFEST_PARAMETER].string_value)
    assert embedded["triton"]["source_sha256"] == hashed[0]


def test_an_export_folder_given_only_a_format_is_not_warned_about(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """``export --model exports/NAME --format triton`` serves the export's files as they are; it warned
    "nothing to add without --half or --int8; to export it again, give the model name", as if the command
    had done nothing, then wrote the Triton model. That warning is for a bare ``export --model exports/NAME``."""
    import logging

    from pvt_deploy.export import export

    art = make_artifact(tmp_path / "art", CLASSIFY)
    with caplog.at_level(logging.INFO, logger="pvt_deploy"):
        export(art, format="triton", triton_repo=tmp_path / "repo", parity=False)
    assert (tmp_path / "repo" / "pvt_v2_b0" / "config.pbtxt").is_file()
    assert "nothing to add" not in caplog.text, caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pvt_deploy"):
        export(art, parity=False)  # a bare one still is
    assert "is an export folder, extended in place: nothing to add without" in caplog.text, caplog.text
