"""Rules that refuse a TensorRT engine built for another GPU/TensorRT, and their messages (pure)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pvt_deploy.errors import EngineMismatchError
from pvt_deploy.runtimes.tensorrt import check_engine_compatibility, rebuild_command


def manifest(**trt: Any) -> dict[str, Any]:
    section = {"version": "10.13.0", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
               "precision": "fp16", "strongly_typed": True, "version_compatible": False,
               "hardware_compatible": False, "source": "model.fp16.onnx"}
    section.update(trt)
    return {"model": "pvt_small", "task": "detect",
            "files": {"model.engine": {"sha256": "abc", "bytes": 3, "precision": "fp16",
                                       "source": "model.fp16.onnx"}},
            "tensorrt": section}


HERE = {"trt_version": "10.13.0.35", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
REBUILD = "pvt-deploy export --model exports/pvt_small --format trt --half"


def refuse(m: dict[str, Any], **here: Any) -> str:
    with pytest.raises(EngineMismatchError) as e:
        check_engine_compatibility(m, **{**HERE, **here})
    msg = str(e.value)
    assert "\n" not in msg
    assert REBUILD in msg or "pvt-deploy export" in msg
    assert e.value.exit_code == 4
    return msg


def test_matching_engine_passes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.tensorrt"):
        check_engine_compatibility(manifest(), **HERE, engine_sha256="abc")
    assert caplog.records == []  # silently: a warning on every load would be noise


def test_tensorrt_version_must_match_major_minor_patch() -> None:
    msg = refuse(manifest(), trt_version="10.14.1.2")
    assert "built with TensorRT 10.13.0" in msg and "10.14.1.2" in msg and REBUILD in msg
    refuse(manifest(), trt_version="10.13.1")
    check_engine_compatibility(manifest(version="10.13.0.35"), **{**HERE, "trt_version": "10.13.0.99"})


def test_version_compatible_engine_runs_on_newer_same_major() -> None:
    m = manifest(version_compatible=True)
    check_engine_compatibility(m, **{**HERE, "trt_version": "10.15.0.1"})
    assert "10.x" in refuse(m, trt_version="10.12.0")  # older runtime
    refuse(m, trt_version="12.0.0")  # a major TensorRT does not list for 10.x plans


def test_version_compatible_trt10_engine_runs_on_trt11() -> None:
    """TensorRT's support matrix: TensorRT 10 version-compatible plans run on a TensorRT 11 runtime
    (and 8 -> 10); no other major crossing. A TensorRT 11 plan never runs on TensorRT 10."""
    check_engine_compatibility(manifest(version_compatible=True), **{**HERE, "trt_version": "11.1.0.7"})
    refuse(manifest(version="11.0.0", version_compatible=True), trt_version="10.16.1")
    assert "11.x" in refuse(manifest(version="11.1.0", version_compatible=True), trt_version="11.0.0")
    assert "10.x or 11.x" in refuse(manifest(version_compatible=True), trt_version="10.12.0")
    refuse(manifest(version="9.3.0", version_compatible=True), trt_version="11.0.0")
    refuse(manifest(), trt_version="11.1.0.7")  # built without the flag: exact version only


def test_compute_capability_must_match() -> None:
    msg = refuse(manifest(), gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    assert "NVIDIA H100" in msg and "8.9" in msg and "RTX 4090" in msg


def test_hardware_compatible_engine_runs_on_any_ampere_or_newer() -> None:
    m = manifest(hardware_compatible=True, compute_capability="8.6", gpu="NVIDIA A10")
    check_engine_compatibility(m, **{**HERE, "compute_capability": "9.0"})
    check_engine_compatibility(m, **{**HERE, "compute_capability": "8.0", "gpu_name": "A100"})
    assert "8.0" in refuse(m, compute_capability="7.5", gpu_name="Tesla T4")


def test_same_capability_other_gpu_loads_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    m = manifest(gpu="NVIDIA A10", compute_capability="8.6")
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.tensorrt"):
        check_engine_compatibility(m, **{**HERE, "gpu_name": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6"})
    assert "RTX 3090" in caplog.text


def test_engine_from_another_platform_is_refused_whatever_its_compatibility() -> None:
    """TensorRT's support matrix: serialized engines are not portable across platforms. An export
    built on an x86-64 A100 with --hardware-compatible (any GPU of compute capability >= 8.0) copied
    to a Jetson Orin (aarch64, 8.7) passed every rule: check and bench listed its trt row as runnable,
    and loading handed the plan to TensorRT's deserializer, whose refusal is a log line about the
    plan. It is refused before loading now, naming both platforms, as a foreign GPU is."""
    m = manifest(platform="linux-x86_64", gpu="NVIDIA A100", compute_capability="8.0", hardware_compatible=True,
                 version_compatible=True)
    orin = {"gpu_name": "Orin (nvgpu)", "compute_capability": "8.7"}
    check_engine_compatibility(m, **{**HERE, **orin}, host="linux-x86_64")
    msg = refuse(m, **orin, host="linux-aarch64")
    assert "built on linux-x86_64 and this machine is linux-aarch64" in msg
    assert "built on linux-x86_64" in refuse(m, **orin, host="linux-aarch64", trt_version="9.0.0")  # named first
    check_engine_compatibility(manifest(), **HERE, host="linux-aarch64")  # an older manifest: rule skipped


def test_engine_file_must_match_manifest_sha256_first() -> None:
    # Checked before versions: a replaced file makes the other fields meaningless.
    msg = refuse(manifest(), trt_version="9.0.0", engine_sha256="def")
    assert "sha256" in msg


def test_unknown_gpu_here_skips_the_capability_rule(caplog: pytest.LogCaptureFixture) -> None:
    built_elsewhere = manifest(gpu="NVIDIA A10", compute_capability="8.6")  # refused on a known 9.0 GPU ...
    assert "8.6" in refuse(built_elsewhere)
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.tensorrt"):  # ... not judged on an unknown one
        check_engine_compatibility(built_elsewhere, **{**HERE, "gpu_name": None, "compute_capability": None})
    assert caplog.records == []
    refuse(built_elsewhere, gpu_name=None, compute_capability=None, trt_version="10.14.0")  # the other rules stay


def test_manifest_without_tensorrt_section_passes_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    m = manifest()
    del m["tensorrt"]
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.tensorrt"):
        check_engine_compatibility(m, **HERE)
    assert "cannot be checked" in caplog.text


def test_rebuild_command_names_the_artifact_and_precision() -> None:
    assert rebuild_command(manifest(), "exports/x") == "pvt-deploy export --model exports/x --format trt --half"
    assert rebuild_command(manifest(precision="int8")).endswith("--format trt --int8")
    assert rebuild_command({"model": "m", "tensorrt": {"precision": "fp32"}}) == \
        "pvt-deploy export --model exports/m --format trt"
