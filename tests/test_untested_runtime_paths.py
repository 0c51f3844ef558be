"""Paths through the runtimes, the loader, the Python API and ``pvt-deploy infer`` that no other test
ran (found by measuring coverage), driven the way a user reaches them: odd arguments to ``Model`` /
``load_backend``, a wrong file given to ``--model``, a damaged cache, ``info`` on each kind of
artifact. Each asserts the outcome a user sees: the one-line message and its exit code, the numbers,
what is (not) left on disk.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_run import run as cli
from test_runtime_artifacts import cached_export

from pvt_deploy import Model
from pvt_deploy.errors import BackendUnavailableError, InputError
from pvt_deploy.io.sources import Frame, Source
from pvt_deploy.manifest import read_manifest, write_manifest
from pvt_deploy.runtimes.loader import backend_candidates, describe_artifact, load_backend


@pytest.fixture(scope="module")
def det_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "det")


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


@pytest.fixture()
def det_copy(det_export: Path, tmp_path: Path) -> Path:
    """A private copy of the detector export, to damage or extend."""
    target = tmp_path / "pvt_v2_b0"
    shutil.copytree(det_export, target, ignore=shutil.ignore_patterns(".ort-cache"))
    return target


def one_line_error(err: str) -> str:
    """The error line ``main`` printed last; fails unless it is one ``error: `` line without a traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err, err
    return lines[-1]


def images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 3, size, size)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Settings of the wrong type: one InputError naming the setting, not an AttributeError from inside
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"device": True}, "device must be 'cpu', 'cuda', 'cuda:N' or a GPU index N, got True"),
    ({"device": 1.5}, "device must be 'cpu', 'cuda', 'cuda:N' or a GPU index N, got 1.5"),
    ({"device": -1}, "device must be 'cpu', 'cuda', 'cuda:N' or a GPU index N, got -1"),
    ({"backend": 5}, "backend must be one of torch, onnx, trt, triton (a string), got 5"),
    ({"precision": 16}, "precision must be one of fp32, fp16, int8 (a string), got 16"),
], ids=["device-bool", "device-float", "device-negative", "backend-int", "precision-int"])
def test_settings_of_the_wrong_type_are_input_errors(det_export: Path, kwargs: dict[str, Any],
                                                     needle: str) -> None:
    with pytest.raises(InputError) as e:
        Model(det_export, **kwargs)
    assert str(e.value) == needle


@pytest.mark.parametrize("model", ["det", "zoo"])
def test_an_integer_device_is_that_cuda_device(det_export: Path, model: str) -> None:
    """``device=0`` (Ultralytics' spelling) means CUDA device 0, as ``device="0"`` does: on a machine
    without CUDA both are refused with the same line, on ONNX Runtime and on PyTorch alike."""
    target = str(det_export) if model == "det" else "pvt_v2_b0-cls"
    with pytest.raises(BackendUnavailableError) as as_int:
        Model(target, device=0)
    with pytest.raises(BackendUnavailableError) as as_text:
        Model(target, device="0")
    assert str(as_int.value) == str(as_text.value)
    assert "CUDA" in str(as_int.value)


def test_info_takes_an_integer_device(det_export: Path) -> None:
    rows = {c.label: c for c in backend_candidates(det_export, device=0)}
    assert not rows["onnx"].available and "no CUDA execution provider" in rows["onnx"].reason
    with pytest.raises(InputError, match="device must be"):
        describe_artifact(det_export, device=2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [-1, 2.5, "2", True], ids=["negative", "float", "string", "bool"])
@pytest.mark.parametrize("model", ["det", "zoo"])
def test_a_bad_thread_count_is_an_input_error(det_export: Path, model: str, threads: Any) -> None:
    """ONNX Runtime took ``threads=-1`` silently and ``2.5`` as 2 and raised ValueError on ``"x"``;
    PyTorch raised ``RuntimeError: set_num_threads expects a positive integer``."""
    target = str(det_export) if model == "det" else "pvt_v2_b0-cls"
    with pytest.raises(InputError) as e:
        Model(target, threads=threads)
    assert str(e.value) == f"threads must be a whole number >= 1 (or 0 / None: one per physical core), got {threads!r}"


def test_a_thread_count_is_what_the_session_gets(det_export: Path) -> None:
    import torch

    before = torch.get_num_threads()
    with Model(det_export, threads=1, inter_op_threads=1) as m:
        assert m.backend.info.details["intra_op_threads"] == 1
    try:
        with Model("pvt_v2_b0-cls", threads=1) as m:
            assert m.backend.info.details["threads"] == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(InputError, match="inter_op_threads must be a whole number"):
        Model(det_export, inter_op_threads=-2)


def _thread_count_probe(seen: list[int]) -> type:
    """A module class for TorchBackend whose forward records the PyTorch thread count it runs at."""
    import torch

    class Probe(torch.nn.Module):
        output_names = ("logits",)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            seen.append(torch.get_num_threads())
            return (x.mean((2, 3)),)

    return Probe


def test_a_torch_thread_count_reaches_server_threads_that_ran_a_model_before() -> None:
    """PyTorch's ``threads=`` is process-wide (README), but ``torch.set_num_threads`` reaches only the
    thread that calls it and threads that have not run PyTorch yet (GNU OpenMP keeps a count per
    thread): a server's worker thread that had served one model ran a second, loaded with
    ``threads=1``, at the first one's count while its ``info`` said 1."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from pvt_deploy.runtimes.torch import TorchBackend

    seen: list[int] = []
    Probe = _thread_count_probe(seen)

    feed = {"images": np.zeros((1, 3, 8, 8), np.float32)}
    before = torch.get_num_threads()
    with ThreadPoolExecutor(1) as worker:  # one long-lived server thread
        try:
            first = worker.submit(TorchBackend, Probe(), threads=2).result()
            worker.submit(first.infer, feed).result()
            second = TorchBackend(Probe(), threads=1)  # loaded by another thread
            worker.submit(second.infer, feed).result()
            worker.submit(first.infer, feed).result()  # the process's count, as README says
            assert second.info.details["threads"] == 1 and seen == [2, 1, 1]
        finally:
            TorchBackend(Probe(), threads=before)  # the count the rest of the session runs at


def test_a_callers_own_torch_thread_count_is_kept_in_its_thread() -> None:
    """The process's count reaches a thread that ran a model before, but a count the caller set there
    itself (``torch.set_num_threads`` in that thread since its last run) is the caller's choice: a model
    loaded elsewhere meanwhile did not put it back to the model's count."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from pvt_deploy.runtimes.torch import TorchBackend

    seen: list[int] = []
    Probe = _thread_count_probe(seen)

    feed = {"images": np.zeros((1, 3, 8, 8), np.float32)}
    before = torch.get_num_threads()
    with ThreadPoolExecutor(1) as worker:
        try:
            first = worker.submit(TorchBackend, Probe(), threads=2).result()
            worker.submit(first.infer, feed).result()
            TorchBackend(Probe(), threads=1)  # loaded by another thread
            worker.submit(torch.set_num_threads, 3).result()  # the caller's own choice, in its thread
            worker.submit(first.infer, feed).result()
            assert seen == [2, 3]
        finally:
            TorchBackend(Probe(), threads=before)


def _tf32_switches() -> list[tuple[Any, str]]:
    """PyTorch's TF32 switches of CUDA matmuls and cuDNN convolutions, as (object, attribute): the
    per-operator fp32_precision of PyTorch 2.9+, else the allow_tf32 flags."""
    import torch

    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(torch.backends.cuda.matmul, "fp32_precision"), (conv, "fp32_precision")]
    return [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32")]


def test_pytorch_fp32_on_a_gpu_runs_without_tf32_and_leaves_the_callers_settings() -> None:
    """The reference FP32 run on a GPU computed in TF32 where PyTorch allows it: cuDNN convolutions by
    default, matmuls after ``torch.set_float32_matmul_precision("high")``, so `check` on a GPU measured its
    exports against a 10-bit-mantissa reference. A run turns PyTorch's TF32 switches off and puts the
    caller's back when the last run in flight ends (the switches are the process's). A device other than
    the CPU (here ``meta``, which this CPU build of PyTorch has) stands in for CUDA."""
    import threading

    import torch

    from pvt_deploy.runtimes.torch import TorchBackend

    switches = _tf32_switches()
    state = lambda: [getattr(obj, name) for obj, name in switches]  # noqa: E731
    ieee = ["ieee", "ieee"] if switches[0][1] == "fp32_precision" else [False, False]
    # set_float32_matmul_precision also sets switches the run does not touch (oneDNN's CPU matmuls):
    # put them back too, or every later test in this process runs with "high"
    original_matmul = torch.get_float32_matmul_precision()
    cpu_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    cpu_switch = [(cpu_matmul, "fp32_precision")] if hasattr(cpu_matmul, "fp32_precision") else []
    original = [getattr(obj, name) for obj, name in [*switches, *cpu_switch]]
    seen: list[tuple[str, list[Any]]] = []
    in_flight, other_done = threading.Event(), threading.Event()

    class Probe(torch.nn.Module):
        output_names = ("logits",)

        def __init__(self, name: str, wait: bool = False) -> None:
            super().__init__()
            self.name, self.wait = name, wait

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            seen.append((self.name, state()))
            if self.wait:  # stay in flight while another model runs and ends
                in_flight.set()
                assert other_done.wait(30)
                seen.append((self.name, state()))
            return (torch.zeros(x.shape[0], 8),)

    feed = {"images": np.zeros((1, 3, 8, 8), np.float32)}
    try:
        torch.set_float32_matmul_precision("high")  # the caller's choice: TF32 matmuls
        torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions
        callers = state()
        assert callers != ieee
        models = {}
        for name in ("slow", "quick", "cpu"):
            models[name] = TorchBackend(Probe(name, wait=name == "slow"), device="cpu")
            if name != "cpu":
                models[name]._device = torch.device("meta")
        slow = threading.Thread(target=models["slow"].infer, args=(feed,))
        slow.start()
        assert in_flight.wait(30)
        models["quick"].infer(feed)
        other_done.set()
        slow.join(30)
        after_gpu = state()
        models["cpu"].infer(feed)
        assert seen == [("slow", ieee), ("quick", ieee), ("slow", ieee), ("cpu", callers)]
        assert after_gpu == callers  # put back when the last run ended, not when the first did
    finally:
        torch.set_float32_matmul_precision(original_matmul)
        for (obj, name), value in zip([*switches, *cpu_switch], original, strict=True):
            setattr(obj, name, value)


# ---------------------------------------------------------------------------------------------------
# A TensorRT engine in the folder (this machine has no TensorRT: what runs instead, and what is said)
# ---------------------------------------------------------------------------------------------------


def add_engine(folder: Path, precision: str) -> Path:
    """A stand-in ``model.engine`` listed in the manifest as built for ``precision``."""
    from pvt_deploy.manifest import file_entry

    engine = folder / "model.engine"
    engine.write_bytes(b"not a TensorRT plan")
    manifest = read_manifest(folder)
    manifest["files"]["model.engine"] = file_entry(engine, precision, source="model.fp16.onnx")
    write_manifest(folder, manifest)
    return engine


@pytest.mark.parametrize(("engine", "asked", "flag"), [("fp16", "fp32", ""), ("fp32", "fp16", " --half"),
                                                       ("fp16", "int8", " --int8")])
def test_an_engine_of_another_precision_names_the_export_flag_that_rebuilds_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_copy: Path, engine: str,
        asked: str, flag: str) -> None:
    """The hint is a command that runs: ``export`` has ``--half`` and ``--int8`` (fp32 is its default),
    no ``--fp16`` / ``--fp32`` (the hint named those, which Typer refuses as unknown options)."""
    add_engine(det_copy, engine)
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", str(det_copy), "--backend", "trt",
                       "--precision", asked, "--no-save")
    assert code == 2
    assert one_line_error(err) == (f"error: {det_copy / 'model.engine'} was built for {engine}, not {asked} "
                                   f"(rebuild it: pvt-deploy export --model {det_copy} --format trt{flag})")
    # the hinted command parses: here it stops at the TensorRT check (exit 3), before any export work
    hint = one_line_error(err).rsplit("(rebuild it: ", 1)[1].rstrip(")").split()
    before = sorted(p.name for p in det_copy.iterdir())
    code, _, err = cli(monkeypatch, capsys, *hint[1:])
    assert code == 3 and "TensorRT is not installed" in one_line_error(err)
    assert sorted(p.name for p in det_copy.iterdir()) == before


# ---------------------------------------------------------------------------------------------------
# FP16 on a machine without a GPU provider (onnxruntime's CPU wheel also lists AzureExecutionProvider)
# ---------------------------------------------------------------------------------------------------


def test_fp16_on_a_cpu_only_onnxruntime_is_said_to_be_slower(det_export: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pvt_deploy.runtimes.ort_providers import GPU_PROVIDERS, available_providers

    if set(GPU_PROVIDERS) & set(available_providers()):
        pytest.skip("this onnxruntime has a GPU provider: FP16 may run on it")
    rows = {c.label: c for c in backend_candidates(det_export)}
    assert rows["onnx-fp16"].available
    assert rows["onnx-fp16"].reason == "CPU only: FP16 runs through casts and is slower than FP32 here"
    assert rows["onnx"].reason == ""
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.runtimes.loader"):
        backend, _ = load_backend(det_export, precision="fp16")
        backend.close()
    assert [r.getMessage() for r in caplog.records] == [
        "model.fp16.onnx: an FP16 graph on the CPU runs through casts and is slower than FP32"]


def test_info_shows_the_fp16_note(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  det_export: Path) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(monkeypatch, capsys, "info", str(det_export), "--device", "cpu")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "onnx-fp16" in line)
    assert "slower than FP32 here" in row


# ---------------------------------------------------------------------------------------------------
# The wrong file given to --model: one line, exit 2, and no output folder made
# ---------------------------------------------------------------------------------------------------


def test_wrong_files_given_to_model_are_one_line_errors(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], det_export: Path,
                                                        tmp_path: Path) -> None:
    lone = tmp_path / "lone" / "model.engine"
    lone.parent.mkdir()
    lone.write_bytes(b"plan")
    photo = str(Path(__file__).parent.parent / "pvt_deploy" / "assets" / "coffee.jpg")
    out = tmp_path / "out"
    cases = [
        ((str(lone),), f"error: {lone}: a lone engine does not say how to preprocess or read its outputs; keep "
                       "the export's manifest.json beside it"),
        ((str(lone), "--backend", "onnx"), "error: model.engine is a TensorRT engine; --backend onnx cannot run it"),
        ((str(det_export / "weights.pth"), "--backend", "onnx"),
         f"error: weights.pth is a PyTorch checkpoint; export it to run it with --backend onnx "
         f"(pvt-deploy export --model {det_export / 'weights.pth'})"),
        ((str(det_export / "model.fp16.onnx"), "--precision", "fp32"),
         "error: model.fp16.onnx holds a fp16 graph, not fp32 (pick model.onnx from the export folder)"),
        ((photo,), f"error: {photo}: not a model pvt-deploy can run (expected an export folder, .onnx, .engine or "
                   "a checkpoint file: .pth, .pt, .bin, .ckpt, .tar, .safetensors)"),
        (("triton://localhost:1/m", "--backend", "onnx"),
         "error: triton://localhost:1/m is a Triton URL; --backend onnx cannot run it"),
    ]
    for model_args, expected in cases:
        code, _, err = cli(monkeypatch, capsys, "infer", photo, "--model", *model_args, "-o", str(out))
        assert (code, one_line_error(err)) == (2, expected)
        assert not out.exists()


def test_the_loader_names_backend_device_and_precision_as_python_and_bench_take_them(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path) -> None:
    """The loader's errors said ``--backend torch``, ``--precision``, ``--device`` in Python too
    (``Model('model.onnx', backend='torch')``), and in ``bench``, whose option is ``--backends`` (labels:
    ``onnx-fp16``...), '--backend torch ... or use --backend onnx', options bench has not. They are
    named by errors.option: as the CLI command spells them, as Python's arguments, and as ``bench``
    and ``check`` (``backends``) take them; the names of backends (torch, onnx) are bench labels too."""
    from pvt_deploy.bench import benchmark
    from pvt_deploy.errors import cli_spelling

    onnx, weights = det_export / "model.onnx", det_export / "weights.pth"
    for kwargs, line in (
            ({"model": onnx, "backend": "torch"},
             "model.onnx is an ONNX file; backend torch cannot run it directly (point at its export folder, or "
             "use backend onnx)"),
            ({"model": weights, "backend": "onnx"}, "weights.pth is a PyTorch checkpoint; export it to run it with "
                                                    f"backend onnx (pvt-deploy export --model {weights})"),
            ({"model": "triton://localhost:1/m", "backend": "onnx"},
             "triton://localhost:1/m is a Triton URL; backend onnx cannot run it"),
            ({"model": "pvt_v2_b0-cls", "backend": "onnx"}, "'pvt_v2_b0-cls' is a zoo name, which runs with "
                                                           "PyTorch; export it first to use backend onnx "
                                                           "(pvt-deploy export --model pvt_v2_b0-cls)"),
            ({"model": det_export, "backend": "torch", "precision": "int8"},
             f"{det_export}: PyTorch runs fp32 or fp16, not int8 (INT8 runs on ONNX Runtime or TensorRT: leave out "
             "backend torch)")):
        with pytest.raises(InputError) as refused:
            Model(**kwargs)
        assert str(refused.value) == line
        with cli_spelling(), pytest.raises(InputError) as refused:  # as pvt-deploy infer names them
            Model(**kwargs)
        assert str(refused.value) == line.replace("backend ", "--backend ")
    report = benchmark(onnx, backends="torch", iters=1, warmup=0)
    assert report["results"][0]["reason"] == ("model.onnx is an ONNX file; backends torch cannot run it directly "
                                              "(point at its export folder, or use backends onnx)")
    code, _, err = cli(monkeypatch, capsys, "bench", "--model", str(onnx), "--backends", "torch", "--iters", "1")
    assert (code, one_line_error(err)) == (2, "error: no backend could be benchmarked here: torch: model.onnx is an "
                                              "ONNX file; --backends torch cannot run it directly (point at its "
                                              "export folder, or use --backends onnx)")
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", str(onnx), "--backend", "torch", "--no-save")
    assert "--backend torch cannot run it directly" in one_line_error(err)  # bench's spelling did not stay


def test_a_file_listed_in_its_folder_is_checked_and_a_renamed_one_reads_its_metadata(
        det_copy: Path, tmp_path: Path) -> None:
    """``--model DIR/model.onnx`` takes the folder's manifest (and its sha256 check); a copy under
    another name is a lone file, described by its own metadata, its precision read from its graph (an FP32
    graph named like an FP16 one is FP32)."""
    backend, manifest = load_backend(det_copy / "model.onnx")
    backend.close()
    assert manifest == read_manifest(det_copy)
    renamed = det_copy / "mine.fp16.onnx"
    shutil.copyfile(det_copy / "model.onnx", renamed)
    backend, manifest = load_backend(renamed)
    with backend:
        assert backend.info.precision == "fp32" and manifest["task"] == "detect"
        assert manifest["files"] == {"mine.fp16.onnx": {"precision": "fp32"}}  # no sha256: nothing to check
        assert "parity" not in manifest  # the metadata carries the essentials, not the export records
    with (det_copy / "model.onnx").open("r+b") as f:  # a truncated copy fails the check, not protobuf
        f.truncate(1000)
    with pytest.raises(InputError, match=r"model.onnx: sha256 differs from the manifest \(file changed or "
                                         r"truncated\); re-export it \(pvt-deploy export"):
        load_backend(det_copy / "model.onnx")


def with_metadata(source: Path, target: Path, text: str) -> Path:
    import onnx

    graph = onnx.load(str(source))
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, {"pvt_deploy": text})
    onnx.save(graph, str(target))
    return target


@pytest.mark.parametrize(("text", "needle"), [
    ("{not json", "corrupt pvt-deploy metadata (Expecting property name enclosed in double quotes"),
    ('{"model": "pvt_v2_b0"}', "the pvt-deploy metadata has no task"),
    ('["task"]', "the pvt-deploy metadata has no task"),
    ('{"task": "detect", "preprocess": {"imgsz": "big"}}',
     'damaged pvt-deploy metadata: preprocess.imgsz is "big", not [height, width] positive integers'),
], ids=["not-json", "no-task", "not-a-dict", "wrong-type"])
def test_a_lone_onnx_with_damaged_metadata_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], det_export: Path,
                                                      tmp_path: Path, text: str, needle: str) -> None:
    lone = with_metadata(det_export / "model.onnx", tmp_path / "lone.onnx", text)
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", str(lone), "-o", str(tmp_path / "out"))
    assert code == 2 and one_line_error(err).startswith(f"error: {lone}: {needle}")
    assert not (tmp_path / "out").exists()
    code, _, err = cli(monkeypatch, capsys, "info", str(lone))
    assert code == 2 and one_line_error(err).startswith(f"error: {lone}: {needle}")


@pytest.mark.parametrize(("damage", "needle"), [
    ({"weights": "x"}, 'weights is "x", not an object'),
    ({"files": ["model.onnx"]}, 'files is ["model.onnx"], not an object'),
    ({"preprocess": {"imgsz": None}}, "preprocess.imgsz is null, not [height, width] positive integers"),
    ({"dynamic": {"batch": "x"}}, 'dynamic.batch is "x", not [lowest, highest] positive integers'),
    ({"task": "zzz"}, 'task is "zzz", not one of detect, segment, classify, features'),
    ({"format_version": "1"}, 'format_version is "1", not an integer'),
    ({"classes": ["a", "b"]}, "classes lists 2 names, but the output logits has 1000 classes"),
], ids=["weights", "files", "imgsz", "dynamic", "task", "version", "classes"])
def test_a_manifest_with_a_field_of_the_wrong_shape_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path,
        damage: dict[str, Any], needle: str) -> None:
    """A manifest edited by hand or damaged into valid JSON of the wrong shape was read field by field
    where each was used: tracebacks (a list for ``files``, a null ``imgsz``), a run on a wrong default (an
    unknown task) or, with a short class list, PyTorch building another head than the graph's (check's
    traceback). Every reader gets the same one line naming the field, exit 2, and nothing is written."""
    folder = tmp_path / "damaged"
    shutil.copytree(cls_export, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    manifest = read_manifest(folder)
    for key, value in damage.items():
        manifest[key] = {**manifest[key], **value} if isinstance(value, dict) else value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    image = tmp_path / "a.png"
    shutil.copy(Path(__file__).parent.parent / "pvt_deploy" / "assets" / "chelsea.jpg", image)
    for args in (["infer", str(image), "--model", str(folder), "-o", str(tmp_path / "out")], ["info", str(folder)]):
        code, _, err = cli(monkeypatch, capsys, *args)
        assert code == 2 and one_line_error(err) == (f"error: {folder / 'manifest.json'}: damaged manifest: {needle} "
                                                     "(re-export it, or restore the file)"), args
    assert not (tmp_path / "out").exists()


def test_an_engine_in_the_folder_without_tensorrt(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                  det_copy: Path) -> None:
    """Without TensorRT the folder runs on ONNX Runtime; ``--backend trt`` is exit 3 with one line;
    ``info`` lists the engine with the reason it cannot run and the file it was built from."""
    from pvt_deploy.runtimes.loader import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are usable here")
    add_engine(det_copy, "fp16")
    backend, _ = load_backend(det_copy)
    with backend:
        assert backend.info.name == "onnxruntime" and backend.info.details["file"].endswith("model.onnx")
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", str(det_copy), "--backend", "trt", "--no-save")
    assert code == 3 and one_line_error(err).startswith("error: TensorRT is not installed")
    info = describe_artifact(det_copy)
    engine = next(f for f in info["files"] if f["name"] == "model.engine")
    assert engine["check"] == "ok" and engine["source"] == "model.fp16.onnx" and engine["precision"] == "fp16"
    trt = next(b for b in info["backends"] if b["label"] == "trt")
    assert (trt["available"], trt["reason"], trt["precision"]) == (False, reason, "fp16")
    trt = next(b for b in describe_artifact(det_copy, device="cpu")["backends"] if b["label"] == "trt")
    assert trt["reason"] == "device cpu"  # named as Python takes it (pvt-deploy info --device cpu: --device cpu)
    info = describe_artifact(det_copy / "model.engine")
    assert info["kind"] == "TensorRT engine" and info["backends"][0]["reason"] == reason


def test_a_hint_names_a_folder_with_a_space_as_one_shell_word(det_copy: Path, tmp_path: Path) -> None:
    """The commands that hints suggest are pasted into a shell: "--model /x/my det --half" split there."""
    spaced = det_copy.rename(tmp_path / "my det")
    (spaced / "model.fp16.onnx").unlink()
    rows = {b["label"]: b for b in describe_artifact(spaced)["backends"]}
    assert rows["onnx-fp16"]["reason"] == f"no model.fp16.onnx in the folder (pvt-deploy export --model '{spaced}' --half)"
    with pytest.raises(InputError) as caught:
        load_backend(str(spaced), precision="fp16", device="cpu")
    assert caught.value.hint == f"add it to this export: pvt-deploy export --model '{spaced}' --half"


def test_info_on_each_kind_of_artifact(det_copy: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.onnx"
    shutil.copyfile(det_copy / "model.onnx", lone)
    info = describe_artifact(lone)
    assert info["kind"] == "ONNX file (manifest from its metadata)" and info["task"] == "detect"
    assert [(f["name"], f["check"], f["precision"]) for f in info["files"]] == [("lone.onnx", "unlisted", "fp32")]
    assert describe_artifact(det_copy / "model.int8.onnx")["kind"] == "ONNX file (manifest from its folder)"
    (det_copy / "model.fp16.onnx").unlink()
    shutil.copyfile(det_copy / "model.onnx", det_copy / "extra.onnx")
    files = {f["name"]: f["check"] for f in describe_artifact(det_copy)["files"]}
    assert files == {"model.onnx": "ok", "model.fp16.onnx": "missing", "model.int8.onnx": "ok", "extra.onnx": "unlisted"}
    rows = {b["label"]: b for b in describe_artifact(det_copy)["backends"]}
    assert rows["onnx-fp16"]["reason"] == f"no model.fp16.onnx in the folder (pvt-deploy export --model {det_copy} --half)"
    lone_engine = tmp_path / "e" / "model.engine"
    lone_engine.parent.mkdir()
    lone_engine.write_bytes(b"plan")
    with pytest.raises(InputError, match="a lone engine has no manifest to describe"):
        describe_artifact(lone_engine)
    with pytest.raises(InputError, match="no such file or folder: nowhere/model.onnx"):
        describe_artifact("nowhere/model.onnx")
    with pytest.raises(InputError, match=r"coffee.jpg: not an artifact pvt-deploy knows \(.*\.safetensors\)$"):
        describe_artifact(Path(__file__).parent.parent / "pvt_deploy" / "assets" / "coffee.jpg")


def test_info_rows_for_a_gpu_device_on_a_machine_without_one(det_export: Path) -> None:
    from pvt_deploy.runtimes.ort_providers import CUDA, TENSORRT, available_providers

    if {CUDA, TENSORRT} & set(available_providers()):
        pytest.skip("this onnxruntime has GPU providers")
    rows = {c.label: c for c in backend_candidates(det_export, device="cuda")}
    assert not any(c.available for c in rows.values())
    assert rows["torch"].reason.startswith("device 'cuda' asked for, but this PyTorch has no usable CUDA")
    assert rows["onnx-int8"].reason.startswith("ONNX Runtime has no CUDA execution provider here")
    rows = {c.label: c for c in backend_candidates(det_export, device="tensorrt")}
    assert rows["torch"].reason == "PyTorch does not run TensorRT (use the trt row)"
    assert rows["onnx"].reason.startswith("ONNX Runtime has no TensorRT execution provider here")


def test_int8_picks_the_cpu_flavour_where_onnxruntime_has_no_tensorrt(det_copy: Path) -> None:
    from pvt_deploy.runtimes.ort_providers import TENSORRT, available_providers

    if TENSORRT in available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    shutil.copyfile(det_copy / "model.onnx", det_copy / "model.int8.trt.onnx")
    backend, _ = load_backend(det_copy, precision="int8")
    with backend:
        assert backend.info.details["file"] == str(det_copy / "model.int8.onnx")
        assert backend.info.device == "CPUExecutionProvider"


def test_a_checkpoint_fine_tuned_on_other_classes_names_them_by_number(tmp_path: Path) -> None:
    import torch

    from pvt_deploy.models import create_model

    ckpt = tmp_path / "ten_classes.pth"
    torch.save(create_model("pvt_v2_b0-cls", num_classes=10).state_dict(), ckpt)
    with Model(ckpt) as m:
        assert m.task == "classify" and m.names == [str(i) for i in range(10)]
        (r,) = m.predict(np.full((40, 50, 3), 128, np.uint8), topk=3)
        assert r.probs is not None and len(r.probs.top5) == 3 and all(0 <= c < 10 for c in r.probs.top5)


# ---------------------------------------------------------------------------------------------------
# ONNX Runtime backend: its cache, IO binding, shards, feeds
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``pvt-deploy export`` of the ``pvt_v2_b0`` classifier (simplified, so the CPU rewrites
    apply and a session loads a cached copy from ``.ort-cache``), without the parity run."""
    from pvt_deploy.export import export_onnx

    return export_onnx("pvt_v2_b0-cls", tmp_path_factory.mktemp("real") / "pvt_v2_b0-cls", imgsz=64, parity=False)


def test_a_damaged_cached_cpu_graph_is_rebuilt(real_cls: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cached CPU graph cut short (a full disk) is rebuilt once, with a warning, and the session
    gives the numbers the intact one gave."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    x = images(2)
    with OnnxRuntimeBackend(real_cls / "model.onnx", device="cpu") as b:
        rewrites = b.info.details["graph_rewrites"]
        reference = b.infer({"images": x})["logits"]
    assert rewrites and sum(rewrites.values()) > 0
    (cached,) = (real_cls / ".ort-cache").glob("model.*.onnx")
    size = cached.stat().st_size
    with cached.open("r+b") as f:
        f.truncate(size // 3)
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.runtimes.onnxruntime"), \
            OnnxRuntimeBackend(real_cls / "model.onnx", device="cpu") as b:
        assert b.info.details["graph_rewrites"] == rewrites
        np.testing.assert_array_equal(b.infer({"images": x})["logits"], reference)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"model.onnx: the cached CPU graph {cached.name} does not load"]
    assert cached.stat().st_size == size


def test_io_binding_and_shards_give_the_same_numbers(cls_export: Path) -> None:
    """``io_binding=True`` on the CPU and a batch of 3 split into 2 shards plus one image left over
    give what one image at a time gives."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    x = images(3)
    with OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", threads=2, shard=False) as b:
        assert b.info.details["batch_shards"] == 1
        alone = np.concatenate([b.infer({"images": x[i:i + 1]})["logits"] for i in range(3)])
    with OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", threads=2) as b:
        assert b.info.details["batch_shards"] == 2
        np.testing.assert_allclose(b.infer({"images": x})["logits"], alone, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b.infer({"images": x.astype(np.float64)})["logits"], alone, rtol=1e-5, atol=1e-5)
    with OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", io_binding=True) as b:
        assert b.info.details["io_binding"] is True
        out = b.infer({"images": x})["logits"]
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, alone, rtol=1e-5, atol=1e-5)


def test_backend_calls_a_user_can_get_wrong(cls_export: Path, tmp_path: Path) -> None:
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    saved = tmp_path / "optimised.onnx"
    b = OnnxRuntimeBackend(cls_export / "model.onnx", device="CPU", optimized_model_path=saved)
    assert saved.is_file() and saved.stat().st_size > 0
    assert json.loads(b.metadata()["pvt_deploy"])["task"] == "classify"
    with pytest.raises(InputError, match=r"^missing input 'images' \(got pixels\)$"):
        b.infer({"pixels": images(1)})
    b.warmup({"images": images(1)}, iters=2)
    b.close()
    b.close()  # idempotent
    assert b.metadata() == {}
    with pytest.raises(InputError, match="^this OnnxRuntimeBackend is closed$"):
        b.infer({"images": images(1)})
    with pytest.raises(InputError, match=r"^bad device 'gpu:x' \(use cpu, cuda, cuda:N or tensorrt\)$"):
        OnnxRuntimeBackend(cls_export / "model.onnx", device="gpu:x")
    with pytest.raises(InputError, match=r"nothing.onnx: no such ONNX file$"):
        OnnxRuntimeBackend(tmp_path / "nothing.onnx")


def test_an_onnx_file_onnx_runtime_cannot_load_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], cls_export: Path,
                                                           tmp_path: Path) -> None:
    """A graph with pvt-deploy metadata that ONNX Runtime refuses (an operator it does not have)."""
    import onnx
    from onnx import TensorProto, helper

    from pvt_deploy.utils import onnx_model

    node = helper.make_node("NoSuchOp", ["images"], ["logits"], domain="example.unknown")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])])
    model = onnx_model(graph)
    model.opset_import.append(helper.make_opsetid("example.unknown", 1))
    meta = json.loads(onnx.load(str(cls_export / "model.onnx")).metadata_props[0].value)
    helper.set_model_props(model, {"pvt_deploy": json.dumps(meta)})
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", str(path), "-o", str(tmp_path / "out"))
    line = one_line_error(err)
    assert code == 2 and line.startswith("error: odd.onnx: ONNX Runtime cannot load it (") and "NoSuchOp" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------
# The Python API called with odd arguments, and generators closed before their first result
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cls_model(cls_export: Path) -> Any:
    with Model(cls_export) as m:
        yield m


class Frames(Source):
    """A source of ``n`` grey frames of a given ``kind``, ``frames`` unknown, that records its closing."""

    def __init__(self, n: int, kind: str, *, live: bool = False) -> None:
        self.n, self.kind, self.live, self.spec = n, kind, live, f"{kind}://test"  # type: ignore[assignment]

    def _iter_frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            yield Frame(np.full((48, 64, 3), 20 * i % 255, np.uint8), i, self.spec, i / 10)


def test_odd_predict_arguments_are_one_line_errors(cls_model: Any, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^save_mask=True needs save=True$"):
        cls_model.predict(None, save_mask=True, save_json=True, save_dir=tmp_path)
    with pytest.raises(InputError, match=r"^classes must be class ids or names, got 3.5$"):
        cls_model.predict(None, classes=3.5)
    with pytest.raises(InputError, match=r"^weights= does not apply to a Triton model \(triton://localhost:1/m\): "
                                         r"the server holds its weights$"):
        Model("triton://localhost:1/m", weights=tmp_path / "w.pth")
    # these three were an AssertionError and TypeErrors from pathlib, not one line naming the argument
    with pytest.raises(InputError, match=r"^vid_stride must be an integer >= 1, got None$"):
        cls_model.predict(None, vid_stride=None)
    with pytest.raises(InputError, match=r"^save_dir must be a folder path, got 123$"):
        cls_model.predict(None, save=True, save_dir=123)
    for item in ([], None):  # a nested list of pixels, a missing picture
        with pytest.raises(InputError, match=rf"^item 1 of the list is a {type(item).__name__}: a list takes image "
                                             r"paths, numpy arrays, PIL images and encoded pictures \(bytes"):
            cls_model.predict([np.zeros((8, 8, 3), np.uint8), item])
    # bytes are an encoded picture since b969c0f: a path given as bytes is said not to decode, with what to give
    with pytest.raises(InputError, match=r"^cannot decode image <bytes> \(corrupt or not an image\)") as caught:
        cls_model.predict([np.zeros((8, 8, 3), np.uint8), b"a.jpg"])
    assert "give a video, or a path, by its name (a str)" in str(caught.value.hint)
    assert list(tmp_path.iterdir()) == []


def test_a_live_stream_or_a_long_video_is_refused_as_a_list(cls_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import pvt_deploy.api as api

    live = Frames(3, "stream", live=True)
    with pytest.raises(InputError, match=r"^stream://test is a live stream: use predict\(\.\.\., stream=True\)"):
        cls_model.predict(live)
    assert live._closed
    monkeypatch.setattr(api, "MAX_LIST_FRAMES", 4)  # a video whose length is not known up front
    video = Frames(6, "video")
    with pytest.raises(InputError, match=r"^video://test has more than 4 frames: use predict\(\.\.\., stream=True\)$"):
        cls_model.predict(video)
    assert len(cls_model.predict(Frames(4, "video"))) == 4


@pytest.mark.parametrize("how", ["throw", "del"])
def test_a_stream_ended_before_its_first_result_leaves_nothing(cls_model: Any, tmp_path: Path, how: str) -> None:
    import gc

    source = Frames(3, "video")
    gen = cls_model.predict(source, stream=True, save=True, save_json=True, save_dir=tmp_path / "out")
    if how == "throw":
        with pytest.raises(ValueError, match="stop"):
            gen.throw(ValueError("stop"))
    else:
        del gen
        gc.collect()
    assert source._closed
    assert cls_model.last_summary is not None and cls_model.last_summary.frames == 0
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------------------------------------
# The command line: --version, help on a narrow terminal, --show without a GUI, long output lists
# ---------------------------------------------------------------------------------------------------


def test_version_and_help_on_an_80_column_terminal(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from pvt_deploy import __version__

    code, out, _ = cli(monkeypatch, capsys, "--version")
    assert (code, out) == (0, f"pvt-deploy {__version__}\n")
    monkeypatch.setenv("COLUMNS", "60")  # narrow enough that Typer would cut long flags to "--allow-parity-fail…"
    code, out, _ = cli(monkeypatch, capsys, "export", "--help")
    assert code == 0 and "--trust-checkpoint" in out
    assert "…" not in out  # folded onto a second line instead: every flag can still be read and typed
    assert "<bool>" not in out  # an on/off flag shows no type, as if "--half true" were the way to write it


def test_show_without_a_gui_says_so_and_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             cls_export: Path, tmp_path: Path) -> None:
    import cv2

    if "GUI:" in cv2.getBuildInformation() and "NONE" not in cv2.getBuildInformation().split("GUI:")[1].split("\n")[0]:
        pytest.skip("this OpenCV has a GUI: a window would open")
    monkeypatch.setenv("DISPLAY", ":99")
    photo = str(Path(__file__).parent.parent / "pvt_deploy" / "assets" / "coffee.jpg")
    code, _, err = cli(monkeypatch, capsys, "infer", photo, "--model", str(cls_export), "--show", "-o", str(tmp_path))
    assert code == 0, err
    assert "--show: this OpenCV has no GUI support (opencv-python-headless); pip install opencv-python to use it; " \
           "continuing without a window" in " ".join(err.split())
    assert cv2.imread(str(tmp_path / "coffee.jpg")).shape == (400, 600, 3)


def test_more_than_five_outputs_are_listed_as_a_count(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], cls_export: Path,
                                                      tmp_path: Path) -> None:
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(7):
        cv2.imwrite(str(photos / f"p{i}.png"), np.full((40, 60, 3), 30 * i, np.uint8))
    out = tmp_path / "out"
    monkeypatch.setenv("COLUMNS", "200")
    code, _, err = cli(monkeypatch, capsys, "infer", str(photos), "--model", str(cls_export), "-o", str(out))
    assert code == 0, err
    listed = [line.strip() for line in err.splitlines() if line.strip().startswith(str(out))]
    assert len(listed) == 5 and "... and 2 more" in err
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(7)]
    assert all(cv2.imread(str(out / f"p{i}.png")).shape == (40, 60, 3) for i in range(7))


def test_save_mask_with_no_save_is_said_to_be_ignored(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    seg = cached_export(tmp_path_factory, "seg")
    photo = str(Path(__file__).parent.parent / "pvt_deploy" / "assets" / "coffee.jpg")
    code, _, err = cli(monkeypatch, capsys, "infer", photo, "--model", str(seg), "--save-mask", "--no-save",
                       "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert "warning: --save-mask writes beside the annotated images, which --no-save turns off: ignored" in \
        " ".join(err.split())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predictions.jsonl"]


# ---------------------------------------------------------------------------------------------------
# PyTorch backend
# ---------------------------------------------------------------------------------------------------


def test_torch_backend_calls_a_user_can_get_wrong() -> None:
    import torch

    from pvt_deploy.runtimes.torch import TorchBackend

    for device, needle in (("tpu", r"^unknown torch device 'tpu' \(use cpu, cuda or cuda:N\)$"),
                           ("meta", r"^unsupported torch device 'meta' \(use cpu, cuda or cuda:N\)$")):
        with pytest.raises(InputError, match=needle):
            Model("pvt_v2_b0-cls", device=device)
    with pytest.raises(InputError) as caught:
        Model("pvt_v2_b0-cls", precision="int8")
    assert caught.value.args[0] == "pvt_v2_b0-cls: PyTorch runs fp32 or fp16, not int8"
    assert caught.value.hint == "export it with INT8 and run that: pvt-deploy export --model pvt_v2_b0-cls --int8"
    with pytest.raises(InputError, match=r"^PyTorch eager runs fp32 or fp16, not int8 \(int8 runs with ONNX"):
        TorchBackend(torch.nn.Identity(), precision="int8")
    with pytest.raises(InputError, match="^the module passed to TorchBackend has no output_names$"):
        TorchBackend(torch.nn.Identity())
    m = Model("pvt_v2_b0-cls")
    b = m.backend
    x = images(2)
    reference = b.infer({"images": x})["logits"]
    assert reference.dtype == np.float32 and reference.shape == (2, 1000)
    np.testing.assert_allclose(b.infer({"images": x.astype(np.float64)})["logits"], reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match=r"^missing input 'images' \(got x\)$"):
        b.infer({"x": x})
    with pytest.raises(InputError, match=r"^input 'images' must be \(N, 3, H, W\), got \[3, 64, 64\]$"):
        b.infer({"images": x[0]})
    m.close()
    m.close()  # idempotent
    with pytest.raises(InputError, match="^this TorchBackend is closed$"):
        b.infer({"images": x})


def test_a_cuda_device_past_the_gpus_there_are_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """``device="cuda:2"`` on a box with one GPU: CUDA's 'invalid device ordinal' came up as a traceback
    from the model's first copy to the device; it is one line naming the GPUs there are (a GPU is faked
    here: is_available/device_count are what the check reads)."""
    import torch

    from pvt_deploy.runtimes.torch import TorchBackend

    module = torch.nn.Identity()
    module.output_names = ("logits",)  # type: ignore[assignment]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("cuda:2", 2, "gpu:1"):
        with pytest.raises(InputError) as caught:
            TorchBackend(module, device=device)  # type: ignore[arg-type]
        assert caught.value.args[0].endswith("here (1 visible, cuda:0)"), caught.value.args[0]
        assert "CUDA_VISIBLE_DEVICES" in (caught.value.hint or "")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(InputError) as caught:
        TorchBackend(module, device="cuda:4")
    assert caught.value.args[0] == "device 'cuda:4': there is no CUDA device 4 here (4 visible, cuda:0 to cuda:3)"


def test_int8_asked_of_pytorch_names_the_way_to_an_int8_model(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              det_export: Path) -> None:
    """``--precision int8`` on a zoo name, a checkpoint or ``--backend torch`` is a choice PyTorch cannot
    run (exit 2, before the model is built), and the hint is the export that makes one; it was exit 3
    ("not available here") with a hint at a model.int8.onnx the user did not have."""
    weights = det_export / "weights.pth"
    for args, line in (
            (("--model", "pvt_v2_b0"), "error: pvt_v2_b0: PyTorch runs fp32 or fp16, not int8 (export it with INT8 "
                                       "and run that: pvt-deploy export --model pvt_v2_b0 --int8)"),
            (("--model", str(weights)), f"error: weights.pth: PyTorch runs fp32 or fp16, not int8 (export it with INT8 "
                                        f"and run that: pvt-deploy export --model {weights} --int8)"),
            (("--model", str(det_export), "--backend", "torch"),
             f"error: {det_export}: PyTorch runs fp32 or fp16, not int8 (INT8 runs on ONNX Runtime or TensorRT: "
             f"leave out --backend torch)")):
        code, _, err = cli(monkeypatch, capsys, "infer", *args, "--precision", "int8", "--no-save")
        assert code == 2 and one_line_error(err) == line


def test_a_model_that_is_no_file_or_a_folder_without_manifest(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str],
                                                               det_export: Path, tmp_path: Path) -> None:
    """``--model /dev/null`` was "unknown model '/dev/null'; known backbones: ..."; a folder holding an
    exported .onnx but no manifest.json now names the graph that runs alone."""
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", "/dev/null", "--no-save")
    assert code == 2 and one_line_error(err) == "error: /dev/null is not a file or folder (a device, pipe or socket)"
    folder = tmp_path / "graphs"
    folder.mkdir()
    shutil.copy(det_export / "model.onnx", folder / "model.onnx")
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", str(folder), "--no-save")
    assert code == 2 and one_line_error(err) == (
        f"error: {folder}: no manifest.json (not a pvt-deploy export folder) (an .onnx that pvt-deploy exported "
        f"runs on its own: --model {folder / 'model.onnx'})")
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", str(folder / "model.onnx"), "--no-save")
    assert code == 0, err


def test_a_batch_the_graph_cannot_take_fails_before_the_stream_is_opened(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """``--batch 3`` on a graph exported for batches of 2 was refused only after the source was opened
    and the run's header printed; a live stream was connected to first (here: a port nobody listens on,
    which gave the connection error instead of the batch one)."""
    import socket

    from export_fixtures import cached_cls_static_batch2

    folder = cached_cls_static_batch2(tmp_path_factory)  # the session's, read only
    with socket.socket() as s:  # held, never listening, for the run: no other socket can take the port meanwhile
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code, out, err = cli(monkeypatch, capsys, "infer", f"http://127.0.0.1:{port}/cam.mjpg", "--model",
                             str(folder), "--batch", "3", "--no-save")
    assert code == 2 and one_line_error(err) == ("error: --batch 3 is more than this graph takes (2) (lower --batch, "
                                                 "or re-export with a larger batch range)")
    assert " on onnxruntime " not in err + out  # the run's header: nothing started
