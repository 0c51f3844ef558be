"""Paths through the runtimes, the loader, the Python API and ``pvt-deploy infer`` that no other test
ran (found by measuring coverage), driven the way a user reaches them: odd arguments to ``Model`` /
``load_backend``, a wrong file given to ``--model``, a damaged cache, ``info`` on each kind of
artifact. Each asserts the outcome a user sees: the one-line message and its exit code, the numbers,
what is (not) left on disk.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runtime_artifacts import cached_export

from pvt_deploy import Model
from pvt_deploy.cli import main
from pvt_deploy.errors import BackendUnavailableError, InputError
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


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pvt-deploy ARGS`` through the console entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), out, err


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
