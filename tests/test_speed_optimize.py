"""The CPU graph rewrites (pvt_deploy.export.optimize) and their session cache are exact.

Each rewrite must match every block it was written for (a silent non-match loses the speed-up) and
the rewritten graph must give the original's outputs in ONNX Runtime at sizes and batches other
than the trace's. Graphs are traced and simplified exactly as ``export_onnx`` does (same exporter,
same onnxslim pass), so the patterns seen here are the ones real artifacts have.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from pvt_deploy.errors import InputError
from pvt_deploy.export.onnx import module_dim_names, trace_to_onnx
from pvt_deploy.export.optimize import FLOAT_REWRITES, QUANTIZED_REWRITES, REWRITES, optimize_for_ort
from pvt_deploy.models import build_deploy_module, create_model
from pvt_deploy.models.synthetic import seeded_state_dict
from pvt_deploy.utils import onnx_model

ort = pytest.importorskip("onnxruntime")
pytest_plugins = ["export_fixtures"]


def _tiny_linear_backbone() -> torch.nn.Module:
    """A one-block-per-stage pvt_v2 "li" backbone (linear SRA + ReLU MLP): the b2_li structure at a
    fraction of its tracing time."""
    from pvt_deploy.models.pvt import PVTConfig
    from pvt_deploy.models.pvt_v2 import PyramidVisionTransformerV2

    model = PyramidVisionTransformerV2(PVTConfig(depths=(1, 1, 1, 1), embed_dims=(32, 64, 160, 256), linear=True),
                                       num_classes=0)
    model.zoo_task = "features"  # type: ignore[assignment]
    return model.eval()


def _export(name: str, hw: tuple[int, int], tmp: Path, *, dynamic: bool = True) -> tuple[Path, torch.nn.Module]:
    """``name`` ending in ``/random``: the model as initialised (``export`` without ``--weights``),
    whose zero biases the exporter drops; otherwise synthetic weights, every bias non-zero."""
    from pvt_deploy.export import graph as g

    zoo, _, init = name.partition("/")
    model = _tiny_linear_backbone() if zoo == "tiny_li-features" else create_model(zoo)
    if init != "random":
        model.load_state_dict(seeded_state_dict(model, 3))
    deploy = build_deploy_module(model)
    example = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0)) * 255
    proto = trace_to_onnx(deploy, example, exporter="torchscript", dynamic=dynamic, opset=17, max_batch=4,
                          size_range=(32, 512))
    proto = g.simplify(proto)
    g.name_dims(proto, module_dim_names(deploy))
    path = tmp / f"{name.replace('/', '-')}{'' if dynamic else '-static'}.onnx"
    onnx.save_model(proto, str(path))
    return path, deploy


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    tmp = tmp_path_factory.mktemp("speed")
    return {
        "pvt_v2_b0-cls": _export("pvt_v2_b0-cls", (64, 96), tmp),  # v2: SRA + conv MLP
        "pvt_tiny-cls": _export("pvt_tiny-cls", (64, 96), tmp),  # v1: SRA (sr 8/4/2/1), plain MLP
        "tiny_li-features": _export("tiny_li-features", (64, 96), tmp),  # linear SRA (b2_li's blocks)
        # as initialised: the Linear biases are zero, so the graph has bare MatMuls where the others
        # have MatMul + Add
        "pvt_v2_b0-cls/random": _export("pvt_v2_b0-cls/random", (64, 96), tmp),
        "pvt_tiny-cls/random": _export("pvt_tiny-cls/random", (64, 96), tmp),
    }


def _session(path: Path | str) -> object:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _images(n: int, h: int, w: int) -> np.ndarray:
    return (np.random.default_rng(h * w + n).random((n, 3, h, w), dtype=np.float32) * 255).astype(np.float32)


@pytest.mark.parametrize(("name", "attention", "mlp", "convs", "gelu_bias"), [
    ("pvt_v2_b0-cls", 8, 8, 10, 0), ("pvt_tiny-cls", 8, 0, 10, 8), ("tiny_li-features", 4, 4, 8, 0),
    ("pvt_v2_b0-cls/random", 8, 8, 10, 0), ("pvt_tiny-cls/random", 8, 0, 10, 0)])
def test_rewrites_match_every_block(graphs: dict, name: str, attention: int, mlp: int, convs: int,
                                    gelu_bias: int) -> None:
    model = onnx.load(str(graphs[name][0]))
    optimized, report = optimize_for_ort(model)
    assert report.rewrites == {"winograd_convs": 0, "sra_attention": attention, "mlp_convs": mlp,
                               "channels_last_convs": convs, "gelu_bias_matmuls": gelu_bias, "amx_conv_weights": 0,
                               "winograd_int8_convs": 0, "unsigned_int8": 0, "int8_channels_last_convs": 0,
                               "int8_gelu_bias": 0}
    assert report.nodes_after < report.nodes_before
    assert len(model.graph.node) == report.nodes_before  # the input is not modified
    ops = {n.op_type for n in optimized.graph.node}
    assert "Softmax" not in ops  # every attention became MultiHeadAttention
    assert any(o.domain == "com.microsoft" for o in optimized.opset_import)
    onnx.checker.check_model(optimized)


def test_v1_classifier_graph_runs_its_last_block_for_the_cls_row_alone(graphs: dict, tmp_path: Path) -> None:
    """Only the cls token's row of the last block reaches the logits, so the exported graph computes
    that block's query, output projection and MLP (four token MatMuls) on one row per image, and
    still agrees with the eager model, which runs the official forward on every token."""
    path, deploy = graphs["pvt_tiny-cls"]
    model = onnx.load(str(path))
    matmuls = [n.output[0] for n in model.graph.node if n.op_type == "MatMul"]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in matmuls)
    probe = tmp_path / "probe.onnx"
    onnx.save_model(model, str(probe))
    x = _images(2, 96, 128)
    logits, *inner = _session(probe).run(None, {"images": x})
    one_row = [y.shape for y in inner if y.ndim == 3 and y.shape[1] == 1]
    assert len(one_row) == 4, one_row
    assert all(y.shape[1] > 1 for y in inner if y.ndim == 3 and y.shape[1] != 1)
    with torch.no_grad():
        ref = deploy(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


@pytest.mark.parametrize("name", ["pvt_v2_b0-cls", "pvt_tiny-cls", "tiny_li-features", "pvt_v2_b0-cls/random",
                                  "pvt_tiny-cls/random"])
def test_rewritten_graph_equals_original(graphs: dict, name: str, tmp_path: Path) -> None:
    path, _ = graphs[name]
    optimized, _ = optimize_for_ort(onnx.load(str(path)))
    out = tmp_path / "opt.onnx"
    onnx.save_model(optimized, str(out))
    a, b = _session(path), _session(out)
    for n, h, w in ((1, 64, 96), (2, 96, 64), (3, 160, 128)):  # trace size and two others, batches 1-3
        x = _images(n, h, w)
        for ra, rb in zip(a.run(None, {"images": x}), b.run(None, {"images": x}), strict=True):
            assert ra.shape == rb.shape
            scale = max(1.0, float(np.abs(ra).max()))
            assert float(np.abs(ra - rb).max()) <= 2e-5 * scale, (name, n, h, w)


def test_detector_rewrite_keeps_detections(det_artifact: Any, tmp_path: Path) -> None:
    """On the session's pvt_v2_b0 RetinaNet (export_fixtures: an export_onnx graph at 160 px, its head
    perturbed so that boxes are found), read only."""
    from pvt_deploy.export.graph import set_metadata

    path = det_artifact.folder / "model.onnx"
    model = onnx.load(str(path))
    # At a 160x160 input P3 is 20x20 (25 Winograd tiles): the FPN output conv, the 4+4 stacked head
    # convs and the 720-channel score conv qualify there; the 36-channel box conv and P4-P7 do not.
    set_metadata(model, "pvt_deploy", {"preprocess": {"imgsz": [160, 160]}})
    optimized, report = optimize_for_ort(model)
    assert report.rewrites == {"winograd_convs": 10, "sra_attention": 8, "mlp_convs": 8, "channels_last_convs": 10,
                               "gelu_bias_matmuls": 0, "amx_conv_weights": 0, "winograd_int8_convs": 0,
                               "unsigned_int8": 0, "int8_channels_last_convs": 0, "int8_gelu_bias": 0}
    out = tmp_path / "opt.onnx"
    onnx.save_model(optimized, str(out))
    a, b = _session(path), _session(out)
    x = _images(2, 128, 160)
    ra, rb = a.run(None, {"images": x}), b.run(None, {"images": x})
    # boxes/scores are per-level top-k: compare order-free (each box's best score, sorted)
    sa, sb = np.sort(ra[1].max(-1), axis=-1), np.sort(rb[1].max(-1), axis=-1)
    np.testing.assert_allclose(sa, sb, atol=1e-5)


def test_unknown_rewrite_is_refused(graphs: dict) -> None:
    with pytest.raises(ValueError, match="unknown rewrite"):
        optimize_for_ort(onnx.load(str(graphs["pvt_tiny-cls"][0])), ["nope"])
    assert set(REWRITES) == {"winograd_convs", "sra_attention", "mlp_convs", "channels_last_convs", "gelu_bias_matmuls",
                             "amx_conv_weights", "winograd_int8_convs", "unsigned_int8", "int8_channels_last_convs",
                             "int8_gelu_bias"}


def test_session_cache_builds_once_and_follows_the_source(graphs: dict, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from pvt_deploy.runtimes.ort_session import optimized_graph

    src = tmp_path / "model.onnx"
    src.write_bytes(graphs["pvt_v2_b0-cls"][0].read_bytes())
    with caplog.at_level(logging.INFO, logger="pvt_deploy"):
        first = optimized_graph(src)
    assert first.changed and not first.cached and first.path.parent == tmp_path / ".ort-cache"
    # export's log says what was rewritten in words, not as a dict with the hidden file's hashed name
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in first.rewrites.items() if n)
    assert said == [f"model.onnx: rewritten for this CPU ({counts}), kept in .ort-cache"], said
    assert "8 sra attention" in counts
    mtime = first.path.stat().st_mtime_ns
    second = optimized_graph(src)
    assert second.cached and second.path == first.path and second.path.stat().st_mtime_ns == mtime
    # A different source (re-export) gets its own copy, never the stale one.
    src.write_bytes(graphs["pvt_tiny-cls"][0].read_bytes())
    third = optimized_graph(src)
    assert third.path != first.path and third.rewrites["mlp_convs"] == 0
    assert not first.path.exists() and not first.path.with_suffix(".json").exists()  # the stale copy is gone


KILLED_WRITE = """
import os, signal, sys
from pvt_deploy.utils.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"the first MB of a 260 MB graph")
    os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, kill -9: no handler runs
"""
LIVE_WRITE = """
import sys
from pvt_deploy.utils.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"being written")
    print("writing", flush=True)
    sys.stdin.read()
"""


def test_a_cpu_graph_killed_while_written_is_removed_by_the_next_build(graphs: dict, tmp_path: Path) -> None:
    """A session killed while it wrote the cached CPU graph left its temporary file (up to 260 MB) in
    ``.ort-cache`` for good: the next session built the copy again beside it, and nothing ever removed
    it. Now a build removes what killed writers left, and leaves one being written alone."""
    import signal
    import subprocess
    import sys

    from pvt_deploy.runtimes.ort_session import optimized_graph
    from pvt_deploy.utils.files import TEMP_GRACE_S

    src = tmp_path / "model.onnx"
    src.write_bytes(graphs["pvt_v2_b0-cls"][0].read_bytes())
    cache = tmp_path / ".ort-cache"
    cache.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(cache / "model.0123456789abcdef0123.onnx")],
                            timeout=60)
    assert killed.returncode == -signal.SIGKILL
    (left,) = cache.iterdir()
    assert left.name.startswith(".model.0123456789abcdef0123.onnx.") and ".part" in left.name
    then = left.stat().st_mtime - TEMP_GRACE_S - 1  # killed a while ago: a newer one may be a writer's before its lock
    os.utime(left, (then, then))
    live = subprocess.Popen([sys.executable, "-c", LIVE_WRITE, str(cache / "model.fedcba9876543210fedc.onnx")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None and live.stdout.readline() == "writing\n"
        graph = optimized_graph(src)
        assert graph.changed and graph.path.parent == cache
        assert not left.exists()
        assert [p for p in cache.iterdir() if p.name.startswith(".model.fedcba9876543210fedc.onnx.")]
    finally:
        live.communicate(timeout=60)
    assert live.returncode == 0 and (cache / "model.fedcba9876543210fedc.onnx").read_bytes() == b"being written"


def test_the_user_cache_is_pvt_deploy_cache_as_set_when_used(graphs: dict, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``.ort-cache`` cannot be made beside a model, its CPU graph goes to the per-user cache's
    ``ort/``. That folder was read once at import (a ``PVT_DEPLOY_CACHE`` set later was not used), and
    ``PVT_DEPLOY_CACHE=`` (empty) made it ``./ort`` in the current folder, where the weights cache took
    an empty value for unset. Both caches now share one root, read when used."""
    from pvt_deploy.runtimes.ort_session import optimized_graph
    from pvt_deploy.utils.download import cache_dir

    src = tmp_path / "ro" / "model.onnx"
    src.parent.mkdir()
    src.write_bytes(graphs["pvt_tiny-cls"][0].read_bytes())
    (src.parent / ".ort-cache").write_bytes(b"")  # a file: no cache folder can be made beside the model
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.setenv("PVT_DEPLOY_CACHE", "")
    graph = optimized_graph(src)
    assert graph.changed and graph.path.parent == home / ".cache" / "pvt-deploy" / "ort"
    assert cache_dir() == home / ".cache" / "pvt-deploy" / "weights" and not list(work.iterdir())
    monkeypatch.setenv("PVT_DEPLOY_CACHE", str(tmp_path / "later"))  # set after pvt_deploy was imported
    graph = optimized_graph(src)
    assert graph.changed and not graph.cached and graph.path.parent == tmp_path / "later" / "ort"
    assert cache_dir() == tmp_path / "later" / "weights"


def test_new_recipe_replaces_only_its_own_sources_copy(graphs: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pvt_deploy.export import optimize
    from pvt_deploy.runtimes.ort_session import optimized_graph

    shared = tmp_path / "user-cache"  # one folder for many exports, as ~/.cache/pvt-deploy/ort is
    a, b = tmp_path / "a" / "model.onnx", tmp_path / "b" / "model.onnx"
    for src, name in ((a, "pvt_v2_b0-cls"), (b, "pvt_tiny-cls")):
        src.parent.mkdir()
        src.write_bytes(graphs[name][0].read_bytes())
    old_a, old_b = optimized_graph(a, cache_dir=shared), optimized_graph(b, cache_dir=shared)
    assert old_a.path.parent == old_b.path.parent == shared and old_a.path != old_b.path
    monkeypatch.setattr(optimize, "RECIPE", optimize.RECIPE + 1)
    new_a = optimized_graph(a, cache_dir=shared)
    assert new_a.changed and not new_a.cached and new_a.path != old_a.path and new_a.path.exists()
    assert not old_a.path.exists()  # a's stale copy is gone ...
    assert old_b.path.exists()  # ... b's (same file name stem, other source) is not
    new_b = optimized_graph(b, cache_dir=shared)
    assert not old_b.path.exists() and new_b.path.exists() and new_a.path.exists()


def test_new_recipe_prunes_a_copy_built_before_the_folder_was_renamed(graphs: dict, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An export is built in a hidden folder and renamed into place, so its cached copy records the
    old path; an upgrade must still delete it rather than leave ~260 MB behind."""
    from pvt_deploy.export import optimize
    from pvt_deploy.runtimes.ort_session import optimized_graph

    staging = tmp_path / ".exp.pvt-new-1234"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(graphs["pvt_tiny-cls"][0].read_bytes())
    optimized_graph(staging / "model.onnx")  # what the parity gate does inside the staging folder
    final = tmp_path / "exp"
    staging.rename(final)
    old = list((final / ".ort-cache").glob("*.onnx"))
    assert len(old) == 1
    monkeypatch.setattr(optimize, "RECIPE", optimize.RECIPE + 1)
    new = optimized_graph(final / "model.onnx")
    assert not new.cached and list((final / ".ort-cache").glob("*.onnx")) == [new.path]
    assert len(list((final / ".ort-cache").glob("*.json"))) == 1


def test_graph_without_matches_loads_as_is(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from pvt_deploy.runtimes.ort_session import optimized_graph

    node = helper.make_node("Relu", ["images"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    src = tmp_path / "relu.onnx"
    onnx.save_model(onnx_model(graph), str(src))
    result = optimized_graph(src)
    assert not result.changed and result.path == src
    assert optimized_graph(src).cached  # the 'nothing to do' verdict is cached too


def test_broken_source_falls_back_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pvt_deploy.runtimes.ort_session import optimized_graph

    src = tmp_path / "bad.onnx"
    src.write_bytes(b"not a model")
    result = optimized_graph(src)
    assert result.path == src and result.error
    assert "rewrites skipped" in caplog.text


def test_backend_loads_the_optimised_copy_and_agrees(graphs: dict, tmp_path: Path) -> None:
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
    from pvt_deploy.runtimes.ort_session import default_rewrites

    src = tmp_path / "model.onnx"
    src.write_bytes(graphs["pvt_v2_b0-cls"][0].read_bytes())
    fast = OnnxRuntimeBackend(src, device="cpu")
    plain = OnnxRuntimeBackend(src, device="cpu", rewrite=False)
    quantized = {r: 0 for r in default_rewrites() if r in QUANTIZED_REWRITES}  # this CPU's set
    assert fast.info.details["graph_rewrites"] == {"winograd_convs": 0, "sra_attention": 8, "mlp_convs": 8,
                                                   "channels_last_convs": 10, "gelu_bias_matmuls": 0} | quantized
    assert plain.info.details["graph_rewrites"] is None
    x = _images(2, 128, 96)
    np.testing.assert_allclose(fast.infer({"images": x})["logits"], plain.infer({"images": x})["logits"],
                               atol=2e-5, rtol=1e-5)
    assert os.listdir(tmp_path / ".ort-cache")


def test_a_damaged_cached_copy_is_rebuilt_by_the_backend(graphs: dict, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A cached CPU graph cut short (a full disk, a hand edit) must not make the export unusable
    nor be blamed on model.onnx: the backend rebuilds it once and runs."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
    from pvt_deploy.runtimes.ort_session import optimized_graph

    src = tmp_path / "model.onnx"
    src.write_bytes(graphs["pvt_v2_b0-cls"][0].read_bytes())
    cached = optimized_graph(src).path
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 3])
    with caplog.at_level("WARNING"):
        backend = OnnxRuntimeBackend(src, device="cpu")
    assert "does not load" in caplog.text and "rebuilding" in caplog.text
    assert backend.info.details["graph_rewrites"]["sra_attention"] == 8  # runs the rebuilt copy
    assert cached.read_bytes() == good
    x = _images(1, 64, 96)
    (ref,) = _session(src).run(None, {"images": x})
    np.testing.assert_allclose(backend.infer({"images": x})["logits"], ref, atol=2e-5, rtol=1e-5)


def test_cpu_batches_run_as_one_shard_per_thread_with_the_whole_batch_outputs(graphs: dict,
                                                                              tmp_path: Path) -> None:
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    src = tmp_path / "model.onnx"
    src.write_bytes(graphs["pvt_v2_b0-cls"][0].read_bytes())
    sharded = OnnxRuntimeBackend(src, device="cpu", threads=2)
    whole = OnnxRuntimeBackend(src, device="cpu", threads=2, shard=False)
    assert sharded.info.details["batch_shards"] == 2 and whole.info.details["batch_shards"] == 1
    assert OnnxRuntimeBackend(src, device="cpu", threads=1).info.details["batch_shards"] == 1
    one = _images(1, 64, 96)
    np.testing.assert_allclose(sharded.infer({"images": one})["logits"],
                               whole.infer({"images": one})["logits"], atol=2e-5, rtol=1e-5)
    assert sharded._shard_session is None  # batch 1 never loads the second session
    for n in (2, 5):  # 5: two shards of 2, the fifth image on the main session
        x = _images(n, 64, 96)
        got = sharded.infer({"images": x})["logits"]
        assert got.shape == (n, 1000)
        np.testing.assert_allclose(got, whole.infer({"images": x})["logits"], atol=2e-5, rtol=1e-5)
    assert sharded._shard_session is not None
    sharded.close()
    sharded.close()  # idempotent


def test_a_sharded_batch_runs_one_image_per_call(graphs: dict, tmp_path: Path) -> None:
    """Each shard runs its images one call each (dynamic INT8: 11-19 % less CPU on the Xeon than a
    call per shard). Dynamic INT8 quantizes each call's activations on their own range, so an image's
    outputs are then the same alone as in any batch: before, a batch of 4 ran as two shards of 2 and
    each image's logits depended on the image beside it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    src = tmp_path / "model.int8.onnx"
    quantize_dynamic(graphs["pvt_v2_b0-cls"][0], src, weight_type=QuantType.QInt8)
    backend = OnnxRuntimeBackend(src, device="cpu", threads=2, precision="int8")
    assert backend.info.details["batch_shards"] == 2
    calls: list[int] = []
    x = _images(5, 64, 96)  # two shards of 2, the fifth image on the main session
    batch = backend.infer({"images": x})["logits"]
    run = backend._shard_session.run
    backend._shard_session = type("Counted", (), {"run": lambda self, names, feed, *options: (
        calls.append(len(next(iter(feed.values())))), run(names, feed, *options))[1]})()
    np.testing.assert_array_equal(backend.infer({"images": x})["logits"], batch)
    assert calls == [1, 1, 1, 1]
    alone = np.concatenate([backend.infer({"images": x[i:i + 1]})["logits"] for i in range(5)])
    np.testing.assert_array_equal(batch, alone)


def test_a_sharded_batch_is_queued_and_a_free_thread_takes_the_next_batchs_images(graphs: dict,
                                                                                 tmp_path: Path) -> None:
    """``submit`` queues a sharded batch on the shard threads and returns before it ends, so the video
    pipeline queues the next batch behind it: a thread that ends its image takes the next one queued,
    the next batch's too, instead of waiting at its own batch's end for the other thread. Here the first
    image holds its thread, and the other thread runs the three images after it."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    src = tmp_path / "model.onnx"
    src.write_bytes(graphs["pvt_v2_b0-cls"][0].read_bytes())
    backend = OnnxRuntimeBackend(src, device="cpu", threads=2)
    assert backend.background_batch == 2
    x = _images(4, 64, 96)
    expected = [backend.infer({"images": x[:2]})["logits"], backend.infer({"images": x[2:]})["logits"]]
    run, gate, started = backend._shard_session.run, threading.Event(), []

    def held(names: list[str], feed: dict[str, np.ndarray], *options: Any) -> list[np.ndarray]:
        started.append(threading.current_thread().name)
        if len(started) == 1:
            assert gate.wait(30)
        return run(names, feed, *options)

    backend._shard_session = type("Held", (), {"run": staticmethod(held)})()
    try:
        first = backend.submit({"images": x[:2]})  # returns while its first image is held
        second = backend.submit({"images": x[2:]})
        deadline = time.monotonic() + 30
        while len(started) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(started) == 4 and len(set(started[1:])) == 1 and started[0] != started[1]
    finally:
        gate.set()
    np.testing.assert_array_equal(first()["logits"], expected[0])
    np.testing.assert_array_equal(second()["logits"], expected[1])
    one = backend.submit({"images": x[:1]})  # smaller than a shard a thread: run before submit returns
    assert len(started) == 4
    np.testing.assert_allclose(one()["logits"], expected[0][:1], atol=2e-5, rtol=1e-5)
    gate.clear()
    started.clear()
    try:  # lane: one picture a call, each on a shard thread of its own (a folder's pictures)
        first = backend.submit({"images": x[:1]}, lane=True)  # returns while held
        second = backend.submit({"images": x[1:2]}, lane=True)
        deadline = time.monotonic() + 30
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(started) == 2 and started[0] != started[1]
    finally:
        gate.set()
    np.testing.assert_array_equal(first()["logits"], expected[0][:1])
    np.testing.assert_array_equal(second()["logits"], expected[0][1:])
    backend.close()
    with pytest.raises(InputError, match="closed"):
        backend.submit({"images": x[:2]})


def test_a_shard_session_that_cannot_load_leaves_batches_whole(graphs: dict, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    src = tmp_path / "model.onnx"
    src.write_bytes(graphs["pvt_v2_b0-cls"][0].read_bytes())
    backend = OnnxRuntimeBackend(src, device="cpu", threads=2)
    reference = OnnxRuntimeBackend(src, device="cpu", threads=2, shard=False)
    path, providers, spin = backend._load
    backend._load = (str(tmp_path / "gone.onnx"), providers, spin)  # the second load fails
    x = _images(4, 64, 96)
    np.testing.assert_allclose(backend.infer({"images": x})["logits"],
                               reference.infer({"images": x})["logits"], atol=2e-5, rtol=1e-5)
    assert "batches run unsharded" in caplog.text and backend.info.details["batch_shards"] == 1


def test_graphs_whose_outputs_mix_the_batch_are_never_sharded(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0, axes=[0])], "sum",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [3])])
    path = tmp_path / "sum.onnx"
    onnx.save(onnx_model(graph, 11), str(path))
    backend = OnnxRuntimeBackend(path, device="cpu", threads=2, rewrite=False)
    assert backend.info.details["batch_shards"] == 1
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(backend.infer({"images": x})["total"], x.sum(0))


def test_quantized_and_half_graphs_are_left_alone(graphs: dict) -> None:
    from onnx import numpy_helper

    model = onnx.load(str(graphs["pvt_v2_b0-cls"][0]))
    quantized = onnx.ModelProto.FromString(model.SerializeToString())
    quantized.graph.node[0].op_type = "DequantizeLinear"  # never run: only the verdict is checked
    _, report = optimize_for_ort(quantized)
    assert report.skipped == "quantized graph" and not any(report.rewrites[r] for r in FLOAT_REWRITES)
    half = onnx.ModelProto.FromString(model.SerializeToString())
    first = half.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first).astype(np.float16), first.name))
    _, report = optimize_for_ort(half)
    assert report.skipped == "float16 graph"


def test_int8_plan_quantizes_matmuls_and_conv_chains_only(graphs: dict, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from pvt_deploy.export.precision import cpu_int8_plan, quantize_int8

    conv = {"patch": "/model/backbone/patch_embed1/proj/Conv", "fpn": "/model/neck/fpn_convs.0/conv/Conv",
            "tower": "/model/bbox_head/cls_convs.0/conv/Conv", "cls": "/model/bbox_head/retina_cls/Conv",
            "reg": "/model/bbox_head/retina_reg/Conv"}
    nodes = [helper.make_node("Conv", ["x", "w"], ["p"], name=conv["patch"]),  # image -> Add: stays FP32
             helper.make_node("Add", ["p", "p"], ["a"]),
             helper.make_node("Conv", ["a", "w"], ["f"], name=conv["fpn"]),  # feeds a conv through ReLU
             helper.make_node("Relu", ["f"], ["fr"]),
             helper.make_node("Conv", ["fr", "w"], ["t"], name=conv["tower"]),  # fed by a chain and feeds two
             helper.make_node("Conv", ["t", "w"], ["s"], name=conv["cls"]),  # end of a chain: score logits
             helper.make_node("Conv", ["t", "w"], ["r"], name=conv["reg"]),
             # dynamo exports name nodes generically; the weight still says what the conv is
             helper.make_node("Conv", ["t", "model.bbox_head.retina_cls.weight"], ["s2"], name="node_Conv_7"),
             helper.make_node("MatMul", ["a", "m"], ["y"], name="weight_matmul"),
             helper.make_node("MatMul", ["y", "y"], ["z"], name="activation_matmul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("s", "r", "z", "s2")],
                              [helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0]),
                               helper.make_tensor("model.bbox_head.retina_cls.weight", TensorProto.FLOAT, [1, 1, 1, 1],
                                                  [1.0]),
                               helper.make_tensor("m", TensorProto.FLOAT, [4, 4], [1.0] * 16)])
    path = tmp_path / "det.onnx"
    onnx.save_model(onnx_model(graph), str(path))
    plan = cpu_int8_plan(path)
    assert plan.convs == [conv["fpn"], conv["tower"], conv["cls"], conv["reg"], "node_Conv_7"]
    assert sorted(plan.nodes) == sorted([*plan.convs, "weight_matmul"])
    assert plan.scores == ["s", "s2"]
    # A classifier has no Conv chains: "auto" quantizes MatMul weights dynamically (no calibration).
    model8, record = quantize_int8(graphs["pvt_tiny-cls"][0], tmp_path / "cls.int8.onnx", flavour="cpu", batches=[],
                                   method="auto")
    assert record["method"] == "dynamic"
    ops = {n.op_type for n in model8.graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops


def _conv_graph(tmp: Path, imgsz: tuple[int, int] | None) -> Path:
    """images (N, 256, H, W) -> 3x3 conv+ReLU (wide, bias) -> 3x3 conv (wide, no bias) -> 3x3 conv
    256->128 (narrow) -> 3x3 stride-2 conv: the first two qualify for Winograd, the last two never."""
    from onnx import TensorProto, helper, numpy_helper

    from pvt_deploy.export.graph import set_metadata

    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.05).astype(np.float32), name) for name, shape in (
        ("w0", (256, 256, 3, 3)), ("b0", (256,)), ("w1", (256, 256, 3, 3)), ("w2", (128, 256, 3, 3)),
        ("w3", (64, 128, 3, 3)))]
    nodes = [helper.make_node("Conv", ["images", "w0", "b0"], ["c0"], name="wide_bias", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], name="wide", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], name="narrow", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c2", "w3"], ["y"], name="strided", pads=[1, 1, 1, 1], strides=[2, 2])]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                              ["batch", 256, "height", "width"])],
                              [helper.make_tensor_value_info("c1", TensorProto.FLOAT, ["batch", 256, "height", "width"]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64, "h2", "w2"])], inits)
    model = onnx_model(graph)
    if imgsz is not None:
        set_metadata(model, "pvt_deploy", {"preprocess": {"imgsz": list(imgsz)}})
    path = tmp / "convs.onnx"
    onnx.save_model(model, str(path))
    return path


def test_winograd_rewrite_equals_direct_conv_at_any_size(tmp_path: Path) -> None:
    from pvt_deploy.export.optimize import winograd_convs

    path = _conv_graph(tmp_path, (20, 20))  # 5x5 = 25 tiles: exactly the threshold
    model = onnx.load(str(path))
    assert winograd_convs(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 2 + 2  # two input transforms + the narrow and the strided conv
    assert ops.count("DepthToSpace") == 2
    onnx.checker.check_model(model)
    out = tmp_path / "wino.onnx"
    onnx.save_model(model, str(out))
    a, b = _session(path), _session(out)
    rng = np.random.default_rng(1)
    # the nominal size, sizes that are not multiples of 4 (cropped tiles), a batch, one tile, a 1-pixel map
    for n, h, w in ((1, 20, 20), (2, 23, 37), (1, 4, 4), (1, 1, 1), (3, 9, 6)):
        x = rng.standard_normal((n, 256, h, w)).astype(np.float32)
        for ra, rb in zip(a.run(None, {"images": x}), b.run(None, {"images": x}), strict=True):
            assert ra.shape == rb.shape
            assert float(np.abs(ra - rb).max()) <= 2e-5 * float(np.abs(ra).max()), (n, h, w)


def test_winograd_skips_small_maps_and_unknown_sizes(tmp_path: Path) -> None:
    from pvt_deploy.export.optimize import winograd_convs

    assert winograd_convs(onnx.load(str(_conv_graph(tmp_path, (16, 16))))) == 0  # 16 tiles
    assert winograd_convs(onnx.load(str(_conv_graph(tmp_path, (17, 16))))) == 0  # 5 x 4 = 20 < 25
    assert winograd_convs(onnx.load(str(_conv_graph(tmp_path, (17, 20))))) == 2  # 5 x 5
    assert winograd_convs(onnx.load(str(_conv_graph(tmp_path, None)))) == 0  # no input size to decide by


def _int8_conv_graph(tmp: Path, imgsz: tuple[int, int]) -> Path:
    """:func:`_conv_graph` as static Q/DQ INT8 (uint8 activations, per-channel int8 weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(3)
            self.feeds = iter([{"images": rng.standard_normal((1, 256, *imgsz)).astype(np.float32)}
                               for _ in range(2)])

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    qdq = tmp / "convs.int8.onnx"
    quantize_static(str(_conv_graph(tmp, imgsz)), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return qdq


def _ort_ops(src: Path, dst: Path) -> list[onnx.NodeProto]:
    """The nodes ONNX Runtime runs for ``src`` after its own fusions (saved to ``dst``)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return list(onnx.load(str(dst)).graph.node)


def test_amx_conv_weights_rebase_int8_convs_bit_exactly(tmp_path: Path) -> None:
    from onnx import numpy_helper

    from pvt_deploy.export.optimize import amx_conv_weights, unsigned_int8
    from pvt_deploy.utils.cpu import cpu_int8_dot_product

    qdq = _int8_conv_graph(tmp_path, (12, 12))
    model = onnx.load(str(qdq))
    inits = {i.name: i for i in model.graph.initializer}
    weight_dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                  and numpy_helper.to_array(inits[n.input[0]]).ndim == 4]
    assert len(weight_dqs) == 4
    before = {n.input[0]: numpy_helper.to_array(inits[n.input[0]]) for n in weight_dqs}
    # a weight tensor holding -128 cannot move down by one: it is left as it is
    first = weight_dqs[0].input[0]
    before[first] = before[first].copy()
    before[first].flat[0] = -128
    inits[first].CopyFrom(numpy_helper.from_array(before[first], first))
    onnx.save_model(model, str(qdq))

    _, report = optimize_for_ort(model, ["amx_conv_weights"])
    assert report.skipped == "quantized graph" and report.rewrites == {"amx_conv_weights": 3}
    rebased = onnx.ModelProto.FromString(model.SerializeToString())
    assert amx_conv_weights(rebased) == 3
    assert amx_conv_weights(rebased) == 0  # zero points are no longer 0: applying it twice changes nothing
    after = {i.name: numpy_helper.to_array(i) for i in rebased.graph.initializer}
    for dq in weight_dqs:
        name, zero = dq.input[0], after[dq.input[2]]
        if name == first:
            assert np.array_equal(after[name], before[name]) and not zero.any()
        else:
            assert np.array_equal(after[name].astype(np.int16), before[name].astype(np.int16) - 1)
            assert zero.dtype == np.int8 and (zero == -1).all()
    if cpu_int8_dot_product() is False:  # U8S8 saturates here, differently in each kernel: compare exact U8U8
        for m in (model, rebased):
            assert unsigned_int8(m) == 4
        onnx.save_model(model, str(qdq))
    out = tmp_path / "rebased.onnx"
    onnx.save_model(rebased, str(out))
    a, b = _session(qdq), _session(out)
    rng = np.random.default_rng(4)
    for n, h, w in ((1, 12, 12), (2, 9, 17)):
        x = rng.standard_normal((n, 256, h, w)).astype(np.float32)
        for ra, rb in zip(a.run(None, {"images": x}), b.run(None, {"images": x}), strict=True):
            assert np.array_equal(ra, rb)  # the same integers, dequantized by the same scales


def test_winograd_int8_convs_keep_the_int8_grid(tmp_path: Path) -> None:
    """Without VNNI, the wide 3x3 convs of an INT8 graph run as float Winograd on the dequantized
    values: ONNX Runtime no longer runs them as QLinearConv, and every output stays on its 8-bit grid,
    at most one step from the exact integer result, and that rarely."""
    from pvt_deploy.export.optimize import unsigned_int8, winograd_int8_convs

    exact_path = _int8_conv_graph(tmp_path, (20, 20))
    model = onnx.load(str(exact_path))
    exact_model = onnx.ModelProto.FromString(model.SerializeToString())
    assert unsigned_int8(exact_model) == 4  # the reference: exact integer products on every CPU
    onnx.save_model(exact_model, str(exact_path))
    _, report = optimize_for_ort(model, ["winograd_int8_convs", "unsigned_int8"])
    assert report.skipped == "quantized graph" and report.rewrites == {"winograd_int8_convs": 2, "unsigned_int8": 2}
    rewritten = onnx.ModelProto.FromString(model.SerializeToString())
    assert winograd_int8_convs(rewritten) == 2  # the wide ones; narrow and strided stay INT8
    assert winograd_int8_convs(rewritten) == 0
    assert unsigned_int8(rewritten) == 2
    onnx.checker.check_model(rewritten)
    out = tmp_path / "wino.onnx"
    onnx.save_model(rewritten, str(out))
    ran, exact = ([n.op_type for n in _ort_ops(src, tmp_path / f"{tag}.ort.onnx")]
                  for src, tag in ((out, "wino"), (exact_path, "exact")))
    assert exact.count("QLinearConv") == 4 and ran.count("QLinearConv") == 2 and ran.count("DepthToSpace") == 2
    steps = {}  # graph output -> the scale of the 8-bit grid it was dequantized from
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in rewritten.graph.initializer}
    for n in rewritten.graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] in ("c1", "y"):
            steps[n.output[0]] = float(inits[n.input[1]])
    assert set(steps) == {"c1", "y"}
    a, b = _session(exact_path), _session(out)
    rng = np.random.default_rng(1)
    for n, h, w in ((1, 20, 20), (2, 23, 37), (1, 1, 1)):
        x = rng.standard_normal((n, 256, h, w)).astype(np.float32)
        for name, ra, rb in zip(("c1", "y"), a.run(None, {"images": x}), b.run(None, {"images": x}), strict=True):
            grid = rb / steps[name]
            assert np.abs(grid - np.round(grid)).max() < 1e-3  # still on the 8-bit grid
            moved = np.abs(ra - rb) / steps[name]
            if name == "c1":  # the rewritten conv's own output: one step, at rounding boundaries only
                assert moved.max() <= 1 + 1e-3 and (moved > 0.5).mean() < 0.005, (n, h, w)
            else:  # two INT8 convs further, those steps have moved a few others (as any 1e-5 change would)
                assert moved.max() <= 3 and np.sqrt(np.mean((ra - rb) ** 2)) <= 0.02 * np.sqrt(np.mean(ra ** 2)), (n, h, w)


@pytest.fixture(scope="module")
def tiny_int8_detector(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    """The CPU INT8 flavour (static Q/DQ) of a pvt_tiny RetinaNet, calibrated on two 160x160 images."""
    from pvt_deploy.export.calibration import Batch
    from pvt_deploy.export.graph import set_metadata
    from pvt_deploy.export.precision import prepare_for_quantization, quantize_int8

    tmp = tmp_path_factory.mktemp("int8det")
    path, _ = _export("pvt_tiny", (96, 128), tmp)
    model = onnx.load(str(path))
    set_metadata(model, "pvt_deploy", {"preprocess": {"imgsz": [160, 160]}})  # P3 20x20: see the float test
    onnx.save_model(model, str(path))
    prepared = tmp / "prepared.onnx"
    prepare_for_quantization(path, prepared)
    batches = [Batch(images=_images(2, 160, 160), metas=[], names=["a", "b"])]
    model8, record = quantize_int8(prepared, tmp / "scratch.onnx", flavour="cpu", batches=batches,
                                   method="static", source=path)
    assert record["method"] == "static"
    return model8


def test_int8_detector_head_runs_as_float_winograd(tiny_int8_detector: onnx.ModelProto, tmp_path: Path) -> None:
    """The CPU INT8 flavour of a RetinaNet: its graph holds ONNX Runtime's own attention and GELU
    nodes, which ONNX's shape inference cannot follow (the head's sizes are read through stand-ins);
    the same convs as in the float graph qualify, and detections stay."""
    model8 = tiny_int8_detector
    assert any(n.domain == "com.microsoft" for n in model8.graph.node)
    exact, _ = optimize_for_ort(model8, ["unsigned_int8"])
    fast, report = optimize_for_ort(model8, ["winograd_int8_convs", "unsigned_int8"])
    assert report.rewrites["winograd_int8_convs"] == 10
    sessions = []
    for tag, m in (("exact", exact), ("fast", fast)):
        onnx.save_model(m, str(tmp_path / f"{tag}.onnx"))
        sessions.append(_session(tmp_path / f"{tag}.onnx"))
    x = _images(2, 160, 160)
    ra, rb = (s.run(None, {"images": x}) for s in sessions)
    sa, sb = np.sort(ra[1].max(-1), axis=-1), np.sort(rb[1].max(-1), axis=-1)
    np.testing.assert_allclose(sa, sb, atol=1e-3)  # scores span 0.16-0.9999 here; measured gap 9e-6


@pytest.mark.parametrize("rebase", [[], ["unsigned_int8"]])
def test_int8_gelus_run_without_their_bias(tiny_int8_detector: onnx.ModelProto, rebase: list[str],
                                           tmp_path: Path) -> None:
    """The point of int8_gelu_bias: in the Q/DQ graph ONNX Runtime fuses fc1's bias Add into the GELU
    as BiasGelu; with the bias in fc1's MatMulIntegerToFloat it runs plain Gelus, and the outputs are
    the same (also on int8 weights re-based to uint8, as on CPUs without VNNI)."""
    before, _ = optimize_for_ort(tiny_int8_detector, rebase)
    after, report = optimize_for_ort(tiny_int8_detector, [*rebase, "int8_gelu_bias"])
    assert report.rewrites["int8_gelu_bias"] == 8  # pvt_tiny: 2 blocks in each of 4 stages
    ops = []
    for tag, m in (("before", before), ("after", after)):
        onnx.save_model(m, str(tmp_path / f"{tag}.onnx"))
        ops.append([n.op_type for n in _ort_ops(tmp_path / f"{tag}.onnx", tmp_path / f"{tag}.ort.onnx")])
    assert (ops[0].count("BiasGelu"), ops[0].count("Gelu")) == (8, 0)  # what the rewrite is for
    assert (ops[1].count("BiasGelu"), ops[1].count("Gelu")) == (0, 8)
    assert ops[1].count("MatMulIntegerToFloat") == ops[0].count("MatMulIntegerToFloat")  # none left as float
    x = _images(2, 160, 160)
    ra, rb = (_session(tmp_path / f"{tag}.onnx").run(None, {"images": x}) for tag in ("before", "after"))
    for a, b in zip(ra, rb, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(a).max()))


def test_int8_float_convs_go_channels_last(tiny_int8_detector: onnx.ModelProto, tmp_path: Path) -> None:
    """The static INT8 flavour keeps the patch and spatial-reduction convs in float, between tokens and
    NCHW maps: 3-D transposes that ran as copies (~8 ms of the pvt_small detector's ~280 ms on the Xeon).
    int8_channels_last_convs writes them as 4-D NHWC transposes, which ONNX Runtime folds into its NCHWc
    reorders, as the float graph's channels_last_convs does; the outputs are the same bits."""
    before, _ = optimize_for_ort(tiny_int8_detector, [])
    after, report = optimize_for_ort(tiny_int8_detector, ["int8_channels_last_convs"])
    assert report.rewrites["int8_channels_last_convs"] == 10  # pvt_tiny: 4 patch convs, 6 SR convs (stages 1-3)
    transposes = []
    for tag, m in (("before", before), ("after", after)):
        onnx.save_model(m, str(tmp_path / f"{tag}.onnx"))
        ran = _ort_ops(tmp_path / f"{tag}.onnx", tmp_path / f"{tag}.ort.onnx")
        transposes.append(sum(n.op_type == "Transpose" for n in ran))
    assert transposes[1] <= transposes[0] - 10, transposes  # the patch/SR convs' layout changes no longer run
    x = _images(2, 160, 160)
    ra, rb = (_session(tmp_path / f"{tag}.onnx").run(None, {"images": x}) for tag in ("before", "after"))
    for a, b in zip(ra, rb, strict=True):
        np.testing.assert_array_equal(a, b)


def test_quantized_rewrites_are_on_only_where_the_cpu_needs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import pvt_deploy.utils.cpu as cpu
    from pvt_deploy.runtimes.ort_session import default_rewrites

    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    amx_cpu = frozenset({"avx512f", "avx512_vnni", "amx_tile", "amx_int8"})
    monkeypatch.setattr(cpu, "cpu_flags", lambda: amx_cpu)
    assert default_rewrites() == (*FLOAT_REWRITES, "amx_conv_weights", "int8_channels_last_convs", "int8_gelu_bias")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni"}))
    assert default_rewrites() == (*FLOAT_REWRITES, "int8_channels_last_convs", "int8_gelu_bias")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))  # x86 without VNNI
    assert default_rewrites() == (*FLOAT_REWRITES, "winograd_int8_convs", "unsigned_int8", "int8_channels_last_convs",
                                  "int8_gelu_bias")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: None)  # unknown: neither
    assert default_rewrites() == (*FLOAT_REWRITES, "int8_channels_last_convs", "int8_gelu_bias")
    monkeypatch.setattr("platform.machine", lambda: "aarch64")  # ARM's dot-product path does not saturate
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"asimd", "asimddp"}))
    assert default_rewrites() == (*FLOAT_REWRITES, "int8_channels_last_convs", "int8_gelu_bias")  # every CPU: ONNX Runtime's own fusion


def _positive_linear_graph(tmp: Path, x: str = "x") -> Path:
    """x (N, 16, 256) -> MatMul by a (256, 64) weight, and x viewed as (N, 16, 16, 16) -> 3x3 conv
    16->32. Inputs in [0.9, 1] and positive weights make every uint8 activation ~240 and every INT8
    weight 64-127: adjacent products sum to ~45000, past the 16-bit range of U8S8 pair sums."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.uniform(0.005, 0.01, shape).astype(np.float32), name)
             for name, shape in (("w", (256, 64)), ("k", (32, 16, 3, 3)))]
    inits.append(numpy_helper.from_array(np.array([0, 16, 16, 16], np.int64), "grid"))
    nodes = [helper.make_node("MatMul", [x, "w"], ["y"], name="linear"),
             helper.make_node("Reshape", [x, "grid"], ["g"]),
             helper.make_node("Conv", ["g", "k"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["z"])]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", 16, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16, 64]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 32, 16, 16])], inits)
    path = tmp / "linear.onnx"
    onnx.save_model(onnx_model(graph), str(path))
    return path


def _int8_products(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(values, zero point) of every 8-bit tensor a DequantizeLinear or MatMulInteger reads, by the
    reading node's output (initializer names may change, node outputs do not)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    found = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            found[n.output[0]] = inits[n.input[0]], inits[n.input[2]]
        elif n.op_type == "DequantizeLinear" and producer[n.input[0]].op_type == "QuantizeLinear":
            found[n.output[0]] = np.zeros(0, inits[n.input[2]].dtype), inits[n.input[2]]  # an activation
        elif n.op_type == "MatMulInteger":
            found[n.output[0]] = inits[n.input[1]], inits[n.input[3]]
    return found


def test_unsigned_int8_is_exact_where_u8s8_saturates(tmp_path: Path) -> None:
    """On x86 without VNNI, ONNX Runtime's U8S8 kernels clip 16-bit pair sums; with the int8 weights
    (and the TensorRT flavour's int8 activations) re-based to uint8, it multiplies U8U8, exactly, on
    every CPU."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from pvt_deploy.export.optimize import unsigned_int8
    from pvt_deploy.utils.cpu import cpu_int8_dot_product

    rng = np.random.default_rng(12)
    x = rng.uniform(0.9, 1.0, (2, 16, 256)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"x": np.concatenate([x, np.zeros_like(x[:1])])}])

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    src = _positive_linear_graph(tmp_path)
    static, symmetric, dynamic = (tmp_path / f"{n}.onnx" for n in ("static", "symmetric", "dynamic"))
    quantize_static(str(src), str(static), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]})
    quantize_static(str(src), str(symmetric), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,  # the TensorRT flavour's types
                    extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"], "ActivationSymmetric": True})
    quantize_dynamic(str(src), str(dynamic), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    saturates = cpu_int8_dot_product() is False
    for path, weights in ((static, 2), (symmetric, 2), (dynamic, 1)):
        model = onnx.load(str(path))
        before = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        activations = sum(n.op_type == "QuantizeLinear" and before[n.input[2]].dtype == np.int8
                          for n in model.graph.node)
        assert activations >= 2 if path == symmetric else activations == 0  # x and the conv input and output
        _, report = optimize_for_ort(model, ["unsigned_int8"])
        assert report.skipped == "quantized graph" and report.rewrites == {"unsigned_int8": weights + activations}
        rebased = onnx.ModelProto.FromString(model.SerializeToString())
        assert unsigned_int8(rebased) == weights + activations
        assert unsigned_int8(rebased) == 0  # already unsigned: nothing left to do
        old, new = _int8_products(model), _int8_products(rebased)
        assert old.keys() == new.keys()
        for key, (value, zero) in old.items():  # every int8 tensor and zero point: v + 128, exactly
            for a, b in ((value, new[key][0]), (zero, new[key][1])):
                if a.dtype == np.int8:
                    assert b.dtype == np.uint8 and np.array_equal(b.astype(np.int16), a.astype(np.int16) + 128)
                else:
                    assert np.array_equal(a, b)  # float scales, int32 biases, uint8 tensors stay
        assert not any(i.dtype == np.int8 for i in (v for pair in new.values() for v in pair))
        out = tmp_path / f"{path.stem}.u8.onnx"
        onnx.save_model(rebased, str(out))
        (y_s8, *_), (y_u8, *z_u8) = _session(path).run(None, {"x": x}), _session(out).run(None, {"x": x})
        # what exact integer arithmetic gives, from the graph's own scales and zero points (float64)
        if path == dynamic:  # activations quantized per call over [min(x, 0), max(x)]
            mul = next(n for n in model.graph.node if n.op_type == "Mul" and n.input[1] in before)
            x_q, w = np.rint(x / (float(x.max()) / 255)) * (float(x.max()) / 255), before["w_quantized"] * before[
                mul.input[1]].astype(np.float64)
        else:
            info = np.iinfo(before["x_zero_point"].dtype)
            x_q = (np.clip(np.rint(x / before["x_scale"]) + before["x_zero_point"], info.min, info.max)
                   - before["x_zero_point"]) * before["x_scale"].astype(np.float64)
            w = before["w_quantized"] * before["w_scale"].astype(np.float64)
            k = before["k_quantized"] * before["k_scale"].astype(np.float64).reshape(-1, 1, 1, 1)
            conv = torch.nn.functional.conv2d(torch.from_numpy(x_q.reshape(2, 16, 16, 16)), torch.from_numpy(k),
                                              padding=1).numpy()
            z_scale, z_zero = before["z_scale"].astype(np.float64), before["z_zero_point"]
            z = (np.clip(np.rint(np.maximum(conv, 0) / z_scale) + z_zero, info.min, info.max) - z_zero) * z_scale
            assert float(np.abs(z_u8[0] - z).max()) <= 1e-6  # QLinearConv, 8-bit out: the same integers
        y = x_q @ w
        np.testing.assert_allclose(y_u8, y, rtol=2e-5)  # float output: the integer products, scaled
        if saturates and path != symmetric:  # this CPU clips U8S8 sums: the original graph is far off
            assert float(np.abs(y_s8 - y).max()) > 100 * float(np.abs(y_u8 - y).max())


def test_export_parity_runs_the_graph_the_backend_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's parity gate runs each file as this CPU's backend sessions load it (the cached
    rewritten copy beside it, which the backend then finds): on x86 without VNNI an INT8 file as
    written saturates (pvt_small's INT8 export failed its gate there, F1 0.404) while the re-based
    graph the backend runs is exact."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import pvt_deploy.utils.cpu as cpu
    from pvt_deploy.export.onnx import ort_runner
    from pvt_deploy.runtimes.ort_session import optimized_graph

    x = np.random.default_rng(13).uniform(0.9, 1.0, (2, 16, 256)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"images": x}])

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    path = tmp_path / "model.int8.onnx"
    quantize_static(str(_positive_linear_graph(tmp_path, "images")), str(path), Reader(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    for flags, rebased in ((frozenset({"avx2", "avx512_vnni"}), False), (frozenset({"avx2", "fma"}), True)):
        monkeypatch.setattr(cpu, "cpu_flags", lambda flags=flags: flags)
        got = ort_runner(path)(x)
        graph = optimized_graph(path)
        assert graph.cached and graph.changed == rebased  # the gate built it; a VNNI CPU runs the file as written
        kinds = {i.data_type for i in onnx.load(str(graph.path)).graph.initializer}
        assert (onnx.TensorProto.INT8 in kinds) != rebased  # int8 weights, or all of them re-based to uint8
        for name, want in zip(("y", "z"), _session(graph.path).run(None, {"images": x}), strict=True):
            np.testing.assert_array_equal(got[name], want)


# --------------------------------------------------------------------------------------------------
# Layout rewrites for the dynamic CPU INT8 graph (optimize.int8_cpu_layout)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "patches", "depthwise", "attention", "gelus"), [
    # b0: 2 blocks in each of the stages with spatial reduction (sr 8, 4, 2), 8 MLPs; overlapping
    # 7x7/3x3 patch embeddings stay convs. tiny (v1): 6 SR convs + the 2x2 patch embeddings of
    # stages 2-4. li: pooled linear SRA has no token conv, 4 MLPs. One GELU per MLP (li: and per attention,
    # after the pooled keys' LayerNorm).
    ("pvt_v2_b0-cls", 6, 8, 8, 8), ("pvt_tiny-cls", 9, 0, 8, 8), ("tiny_li-features", 0, 4, 4, 8)])
def test_int8_layout_matches_every_block_and_is_exact(graphs: dict, name: str, patches: int, depthwise: int,
                                                      attention: int, gelus: int, tmp_path: Path) -> None:
    from pvt_deploy.export.optimize import int8_cpu_layout

    path, _ = graphs[name]
    model = onnx.load(str(path))
    convs_before = sum(n.op_type == "Conv" for n in model.graph.node)
    # every fused attention then written back as plain operators (attention_as_matmuls)
    assert int8_cpu_layout(model) == {"patch_matmuls": patches, "depthwise_channels_last": depthwise,
                                      "sra_attention": attention, "gelu": gelus, "plain_attention": attention}
    onnx.checker.check_model(model)
    assert sum(n.op_type == "Conv" for n in model.graph.node) == convs_before - patches
    assert {n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")} == {"FusedMatMul", "Gelu"}
    assert sum(n.op_type == "FusedMatMul" for n in model.graph.node) == attention
    assert not any(n.op_type == "Erf" for n in model.graph.node)
    out = tmp_path / "layout.onnx"
    onnx.save_model(model, str(out))
    a, b = _session(path), _session(out)
    # (1, 72, 100): stage-1 map 18x25, not a multiple of the 8x8 reduction patch (the conv drops the rest)
    for n, h, w in ((1, 64, 96), (2, 96, 64), (1, 72, 100)):
        x = _images(n, h, w)
        for ra, rb in zip(a.run(None, {"images": x}), b.run(None, {"images": x}), strict=True):
            assert ra.shape == rb.shape
            scale = max(1.0, float(np.abs(ra).max()))
            assert float(np.abs(ra - rb).max()) <= 2e-5 * scale, (name, n, h, w)


@pytest.mark.parametrize("heads", [1, 2, 5])
def test_attention_as_matmuls_equals_multihead_attention(heads: int, tmp_path: Path) -> None:
    """The INT8 layout writes each fused attention back as FusedMatMul/Softmax/MatMul (with the head
    split for several heads): the same outputs, at any batch and sequence lengths."""
    from onnx import TensorProto, helper

    from pvt_deploy.export.optimize import attention_as_matmuls

    width = 32 * heads
    graph = helper.make_graph(
        [helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], name="attn", domain="com.microsoft",
                          num_heads=heads, scale=0.17)], "attention",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", seq, width])
         for name, seq in (("q", "queries"), ("k", "keys"), ("v", "keys"))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = onnx_model(graph)
    model.opset_import.add(domain="com.microsoft", version=1)
    src, dst = tmp_path / "mha.onnx", tmp_path / "plain.onnx"
    onnx.save_model(model, str(src))
    assert attention_as_matmuls(model) == 1
    assert not any(n.op_type == "MultiHeadAttention" for n in model.graph.node)
    onnx.save_model(model, str(dst))
    rng = np.random.default_rng(heads)
    for batch, queries, keys in ((1, 49, 49), (3, 100, 7)):
        feed = {"q": rng.standard_normal((batch, queries, width), dtype=np.float32),
                **{n: rng.standard_normal((batch, keys, width), dtype=np.float32) for n in ("k", "v")}}
        (want,), (got,) = _session(src).run(None, feed), _session(dst).run(None, feed)
        assert got.shape == want.shape == (batch, queries, width)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnxruntime_folds_the_depthwise_transposes(graphs: dict, tmp_path: Path) -> None:
    """The point of depthwise_channels_last: ONNX Runtime's NCHWc pass turns the 4-D transposes into
    channels-last reorders, so the graph it runs has two transposes fewer per MLP."""
    from pvt_deploy.export.optimize import depthwise_channels_last

    def ort_ops(model: onnx.ModelProto, tag: str) -> tuple[int, int]:
        src = tmp_path / f"{tag}.onnx"
        onnx.save_model(model, str(src))
        nodes = _ort_ops(src, tmp_path / f"{tag}.ort.onnx")  # ONNX Runtime's default level: every fusion
        channels_last = sum(1 for n in nodes if n.op_type in ("ReorderInput", "ReorderOutput")
                            and any(a.name == "channels_last" and a.i == 1 for a in n.attribute))
        return sum(n.op_type == "Transpose" for n in nodes), channels_last

    model = onnx.load(str(graphs["pvt_v2_b0-cls"][0]))
    before = ort_ops(model, "plain")
    assert depthwise_channels_last(model) == 8
    after = ort_ops(model, "nhwc")
    assert after[0] == before[0] - 16
    assert after[1] >= before[1] + 8


def test_onnxruntime_folds_every_token_transpose_of_the_cpu_graph(graphs: dict, tmp_path: Path) -> None:
    """The point of channels_last_convs and of mlp_convs' NHWC form: every layout change between tokens
    and a conv's map becomes a channels-last NCHWc reorder, so ONNX Runtime runs no Transpose in
    pvt_v2_b0-cls (35 before: two per MLP, SR conv and patch conv of stages 2-4, one after the first)."""
    optimized, report = optimize_for_ort(onnx.load(str(graphs["pvt_v2_b0-cls"][0])))
    src = tmp_path / "opt.onnx"
    onnx.save_model(optimized, str(src))
    nodes = _ort_ops(src, tmp_path / "opt.ort.onnx")
    channels_last = [n.op_type for n in nodes if n.op_type in ("ReorderInput", "ReorderOutput")
                     and any(a.name == "channels_last" and a.i == 1 for a in n.attribute)]
    assert [n.name for n in nodes if n.op_type == "Transpose"] == []
    # in and out of 8 MLPs and 6 SR convs, in and out of 3 patch convs, out of the first
    assert (channels_last.count("ReorderInput"), channels_last.count("ReorderOutput")) == (17, 18)
    assert report.rewrites["channels_last_convs"] == 10


def test_dynamic_cpu_int8_quantizes_the_patch_matmuls(graphs: dict, tmp_path: Path) -> None:
    from pvt_deploy.export.precision import quantize_int8

    path, _ = graphs["pvt_tiny-cls"]
    model8, record = quantize_int8(path, tmp_path / "cls.int8.onnx", flavour="cpu", batches=[], method="dynamic")
    assert record["layout"] == {"patch_matmuls": 9, "depthwise_channels_last": 0, "sra_attention": 8, "gelu": 8,
                                "plain_attention": 8}
    assert "static_depthwise" not in record and "static_patch_convs" not in record  # v1: none of either
    ops = [n.op_type for n in model8.graph.node]
    assert ops.count("Conv") == 1  # only the image's 4x4 patch embedding stays float
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") >= 8 * 4 + 9
    out = tmp_path / "cls.int8.onnx"
    onnx.save_model(model8, str(out))
    x = _images(2, 64, 96)
    (ref,), (got,) = _session(path).run(None, {"images": x}), _session(out).run(None, {"images": x})
    cosine = float((ref * got).sum() / (np.linalg.norm(ref) * np.linalg.norm(got)))
    assert cosine > 0.99


def test_dynamic_cpu_int8_runs_depthwise_convs_as_channels_last_qlinearconv(graphs: dict, tmp_path: Path) -> None:
    """v2's depthwise convs get calibrated static INT8: ONNX Runtime then runs them as channels-last
    QLinearConv on the token layout, without the float conv's NCHWc reorders, and the GELU after the
    dequantized output stays one node. So do the overlapping patch embeddings of stages 2-4; the first,
    on the image's 3 channels, stays a float conv."""
    from pvt_deploy.export.calibration import Batch
    from pvt_deploy.export.precision import quantize_int8

    path, _ = graphs["pvt_v2_b0-cls"]
    batches = [Batch(images=_images(2, 64, 96), metas=[], names=["a", "b"]),
               Batch(images=_images(1, 96, 64), metas=[], names=["c"])]
    out = tmp_path / "cls.int8.onnx"
    model8, record = quantize_int8(path, tmp_path / "scratch.onnx", flavour="cpu", batches=batches, method="dynamic")
    assert record["static_depthwise"]["convs"] == 8
    assert record["static_depthwise"]["calibration"] == {"method": "minmax", "batches": 2, "images": 3}
    assert record["static_patch_convs"]["convs"] == 3
    assert record["static_patch_convs"]["calibration"] == record["static_depthwise"]["calibration"]
    onnx.save_model(model8, str(out))

    def reorders(nodes: list[onnx.NodeProto]) -> int:
        return sum(n.op_type in ("ReorderInput", "ReorderOutput") for n in nodes)

    ran = _ort_ops(out, tmp_path / "static.ort.onnx")
    qconvs = [n for n in ran if n.op_type == "QLinearConv"]
    assert len(qconvs) == 8 + 3 and all(any(a.name == "channels_last" and a.i == 1 for a in n.attribute) for n in qconvs)
    assert sum("patch_embed" in n.name for n in qconvs) == 3
    assert [n.input[1] for n in ran if n.op_type == "Conv"] and all(  # the image's patch conv stays float
        "patch_embed1" in n.name for n in ran if n.op_type == "Conv")
    assert sum(n.op_type == "Gelu" for n in ran) == 8 and not any(n.op_type == "Erf" for n in ran)
    plain, _ = quantize_int8(path, tmp_path / "scratch2.onnx", flavour="cpu", batches=[], method="dynamic")
    onnx.save_model(plain, str(tmp_path / "plain.onnx"))
    assert reorders(ran) <= reorders(_ort_ops(tmp_path / "plain.onnx", tmp_path / "plain.ort.onnx")) - 16  # two per depthwise conv
    for x in (_images(2, 64, 96), _images(1, 72, 100)):
        (ref,), (got,) = _session(path).run(None, {"images": x}), _session(out).run(None, {"images": x})
        cosine = float((ref * got).sum() / (np.linalg.norm(ref) * np.linalg.norm(got)))
        assert cosine > 0.99


@pytest.mark.parametrize("name", ["pvt_v2_b0-cls", "pvt_tiny-cls"])
def test_static_export_rewrites_still_load_and_match(name: str, tmp_path: Path) -> None:
    """A static export carries some projections as 2-D Gemms (onnxslim folds the batch into the rows);
    the rewrites must leave a graph ONNX Runtime loads (MultiHeadAttention takes 3-D inputs only) with
    the original's outputs. Fewer blocks may match there than in a dynamic export."""
    from pvt_deploy.export.optimize import int8_cpu_layout

    path, _ = _export(name, (64, 96), tmp_path, dynamic=False)
    optimized, report = optimize_for_ort(onnx.load(str(path)))
    laid_out = onnx.load(str(path))
    layout = int8_cpu_layout(laid_out)
    # stages 2-4 (several heads) are fused through 3-D views of the 2-D projections, but for the
    # single-query attention of the classifier's last block, whose query transpose onnxslim folds
    # into its reshape when sizes are static (one row: the transpose moves nothing)
    assert report.rewrites["sra_attention"] >= 5 and layout["sra_attention"] >= 5
    x = _images(1, 64, 96)
    (ref,) = _session(path).run(None, {"images": x})
    for tag, model in (("optimized", optimized), ("int8-layout", laid_out)):
        out = tmp_path / f"{tag}.onnx"
        onnx.save_model(model, str(out))
        (got,) = _session(out).run(None, {"images": x})
        assert float(np.abs(ref - got).max()) <= 2e-5 * max(1.0, float(np.abs(ref).max())), tag


def test_onnxruntime_runs_v1_gelus_without_their_bias(graphs: dict, tmp_path: Path) -> None:
    """The point of gelu_bias_matmuls: ONNX Runtime fuses fc1's bias Add into the GELU as BiasGelu,
    ~1.6x a plain Gelu on the block's widest tensor; with the bias inside fc1's MatMul it runs plain
    Gelus, and no bias Add is left in front of one."""
    path = graphs["pvt_tiny-cls"][0]
    plain = _ort_ops(path, tmp_path / "plain.ort.onnx")
    assert sum(n.op_type == "BiasGelu" for n in plain) == 8  # what the rewrite is for
    optimized, report = optimize_for_ort(onnx.load(str(path)))
    assert report.rewrites["gelu_bias_matmuls"] == 8
    src = tmp_path / "opt.onnx"
    onnx.save_model(optimized, str(src))
    nodes = _ort_ops(src, tmp_path / "opt.ort.onnx")
    assert [n.op_type for n in nodes if n.op_type in ("BiasGelu", "FastGelu")] == []
    assert sum(n.op_type == "Gelu" for n in nodes) == 8
    fc1 = [n for n in optimized.graph.node if n.op_type == "MatMul" and n.name.endswith("fc1/MatMul/MatMul")]
    assert len(fc1) == 8  # each reads its input with the ones column: K + 1 weight rows
    weights = {i.name: i for i in optimized.graph.initializer}
    assert all(weights[n.input[1]].dims[0] == 1 + 64 * (1, 2, 5, 8)[i // 2] for i, n in enumerate(fc1))
