"""`pvt-deploy doctor`: a table or JSON of what is installed and usable, exit code 0."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvt_deploy.cli import app
from pvt_deploy.doctor import collect, render_table, to_json

KEYS = {"python", "pvt_deploy", "numpy", "torch", "cuda", "onnxruntime", "cpu_int8", "tensorrt", "av", "h264_encoders",
        "opencv", "onnx", "onnxslim", "onnxscript", "tritonclient"}


@pytest.fixture(scope="module")
def report() -> dict:
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["components"]


def test_json_lists_every_component_with_status_and_version(report: dict) -> None:
    assert set(report) >= KEYS
    for key, row in report.items():
        assert row["status"] in ("ok", "warn", "missing", "error"), key
    import onnxruntime
    import torch

    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert report["torch"]["version"] == torch.__version__
    assert report["onnxruntime"]["info"]["providers"] == onnxruntime.get_available_providers()
    assert report["cuda"]["status"] == ("ok" if torch.cuda.is_available() else "missing")
    from pvt_deploy.utils.cpu import INT8_PAYS, cpu_int8_dot_product, int8_gemm_gain

    slow_int8 = cpu_int8_dot_product() is False and (int8_gemm_gain() or 0.0) < INT8_PAYS  # cached: doctor's figure
    assert report["cpu_int8"]["status"] == ("warn" if slow_int8 else "ok")


@pytest.mark.parametrize(("flags", "gain", "status", "needle"), [
    ({"avx2", "fma", "avx512_vnni"}, None, "ok", "VNNI / dot-product"),
    ({"avx2", "fma"}, 1.05, "warn", "not faster; 8-bit GEMMs 1.1x FP32's rate here"),  # a Zen 1 EPYC
    ({"avx2", "fma"}, 1.55, "ok", "8-bit GEMMs 1.6x FP32's rate here: faster where GEMMs dominate"),  # a Zen 3
    ({"avx2", "fma"}, None, "warn", "at about FP32's speed, not faster"),  # could not measure
])
def test_cpu_int8_row_follows_the_measured_gemm_rate(monkeypatch: pytest.MonkeyPatch, flags: set[str],
                                                    gain: float | None, status: str, needle: str) -> None:
    import pvt_deploy.utils.cpu as cpu
    from pvt_deploy import doctor

    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(cpu, "int8_gemm_gain", lambda: gain)
    (row,) = [r for r in doctor._onnxruntime() if r.key == "cpu_int8"]
    assert row.status == status and needle in row.summary, row


def test_int8_gemm_gain_is_measured() -> None:
    from pvt_deploy.utils.cpu import int8_gemm_gain

    int8_gemm_gain.cache_clear()
    gain = int8_gemm_gain()
    # a real ratio of two timed ONNX Runtime products (0.5-6x on any CPU seen: 1.1 on a Zen 1, 1.5 on a
    # Zen 3 at one thread, more with VNNI), never a placeholder
    assert gain is not None and 0.3 < gain < 20


def test_tensorrt_row_says_how_to_get_it_when_missing(report: dict) -> None:
    row = report["tensorrt"]
    if row["status"] == "missing":
        assert "docker build -f docker/Dockerfile" in row["hint"] and "pip install" in row["hint"]
    else:
        assert row["version"]


def test_h264_encoders_are_opened_not_listed(report: dict) -> None:
    row = report["h264_encoders"]
    probes = row["info"]["probes"]
    assert set(probes) == {"h264_nvenc", "libx264", "libopenh264"}
    assert "libx264" in row["info"]["usable"]  # PyAV wheels ship libx264
    # no NVIDIA driver here: nvenc is in FFmpeg but cannot open
    import torch

    if not torch.cuda.is_available():
        assert "h264_nvenc" not in row["info"]["usable"]


def test_table_output_and_no_encoder_probe() -> None:
    result = CliRunner().invoke(app, ["doctor", "--no-encoders"])
    assert result.exit_code == 0, result.output
    for name in ("Python", "PyTorch", "ONNX Runtime", "TensorRT", "PyAV", "OpenCV", "onnxslim", "tritonclient"):
        assert name in result.output
    assert "H.264 encoders" not in result.output


def test_a_broken_package_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("onnxruntime")  # importable, but nothing in it works
    monkeypatch.setitem(sys.modules, "onnxruntime", broken)
    checks = {c.key: c for c in collect(probe_encoders=False)}
    assert checks["onnxruntime"].status == "error" and "probe failed" in checks["onnxruntime"].summary
    assert to_json(list(checks.values()))["components"]["onnxruntime"]["status"] == "error"
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render_table(list(checks.values())))
    row = next(line for line in console.export_text().splitlines() if "ONNX Runtime" in line)
    assert "error" in row and "probe failed" in row, row  # the table shows it too, on the component's row


@pytest.mark.parametrize(("numpy_version", "hint"), [("2.2.6", "numpy<2"), ("1.26.4", "pip install -U numpy")])
def test_a_torch_that_cannot_use_this_numpy_is_an_error(monkeypatch: pytest.MonkeyPatch, numpy_version: str,
                                                        hint: str) -> None:
    """A torch built against NumPy 1.x (the Jetson AI Lab wheels for CUDA <= 12.6) imports under NumPy 2
    with a warning only; every torch.from_numpy then raises "Numpy is not available", which fails the
    TensorRT and PyTorch backends. doctor said PyTorch ok."""
    import numpy
    import torch

    def from_numpy(array: object) -> None:
        raise RuntimeError("Numpy is not available")

    monkeypatch.setattr(torch, "from_numpy", from_numpy)
    monkeypatch.setattr(numpy, "__version__", numpy_version)
    checks = {c.key: c for c in collect(probe_encoders=False)}
    row = checks["torch"]
    assert row.status == "error" and row.version == torch.__version__, row
    assert f"cannot exchange arrays with NumPy {numpy_version}" in row.summary and "Numpy is not available" in row.summary
    assert hint in (row.hint or ""), row.hint
    assert checks["cuda"].status in ("ok", "missing")  # the CUDA row is still probed


def test_a_torch_that_uses_this_numpy_is_ok() -> None:
    from pvt_deploy import doctor

    row = doctor._torch()[0]
    assert row.key == "torch" and row.status == "ok", row


def test_console_entry_point_exits_zero() -> None:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "pvt_deploy", "doctor", "--json", "--no-encoders"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tensorrt" in json.loads(proc.stdout)["components"]


@pytest.mark.parametrize("loads", [False, True])
def test_a_listed_tensorrt_provider_without_tensorrt_is_marked_unused(monkeypatch: pytest.MonkeyPatch,
                                                                      loads: bool) -> None:
    """onnxruntime-gpu lists its TensorRT provider with or without TensorRT; the row says which. Without a GPU it is
    unused either way: it runs on the CUDA provider's libraries and GPU (test_doctor_50 has a GPU's cases)."""
    import onnxruntime

    from pvt_deploy import doctor
    from pvt_deploy.runtimes import ort_providers

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: loads)
    monkeypatch.setattr(ort_providers, "cuda_device_count", lambda: None)  # no GPU: the CUDA provider is marked too
    (row,) = [r for r in doctor._onnxruntime() if r.key == "onnxruntime"]
    assert row.info["tensorrt_provider_usable"] is False
    lacks = "needs the CUDA provider" if loads else "no TensorRT libraries, needs the CUDA provider"
    assert row.summary.endswith(f"providers: Tensorrt (unused: {lacks}), CUDA (unused: no GPU), CPU"), row.summary


@pytest.mark.parametrize(("version", "spec", "met"), [
    ("2.13.0+cpu", ">=2.4", True), ("1.18.1", ">=1.19", False), ("1.19.0", ">=1.19", True),
    ("12.0.1", "<12,>=10.0", False), ("10.3.0", "<12,>=10.0", True), ("4.10.0.82", ">=4.10.0.84", False),
    ("0.17.6", "==0.17.6", True), ("1.2.9", "==1.2.*", True), ("1.3", "==1.2.*", False), ("1.20.0rc1", ">=1.19", True),
    # a zero in a prefix counts (==1.0.* is not ==1.*), and ~= caps at its prefix (~=1.4.2: >=1.4.2, ==1.4.*)
    ("1.5.0", "==1.0.*", False), ("1", "==1.0.*", True), ("1.0.3", "!=1.0.*", False),
    ("1.4.5", "~=1.4.2", True), ("1.5.0", "~=1.4.2", False), ("1.4.1", "~=1.4.2", False),
    ("1.9", "~=1.4", True), ("2.0", "~=1.4", False), ("1.1", "~=1.0.0", False), ("1.0.7", "~=1.0.0", True),
])
def test_versions_are_compared_by_release_numbers(version: str, spec: str, met: bool) -> None:
    from pvt_deploy.doctor import _meets

    assert _meets(version, spec) is met


def test_a_package_older_or_newer_than_declared_is_an_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor said "ok" for any installed version: a NumPy under the floor (installed with --no-deps,
    or an editable install a git pull moved past) read as fine until something failed far away."""
    import numpy

    from pvt_deploy import doctor

    declared = ["numpy>=99", "pyyaml-not-a-real-dist>=6", 'tritonclient[grpc,http]<2; extra == "triton"',
                'tensorrt-not-installed<12,>=10.0; extra == "trt"', 'pytest>=999; extra == "dev"', "rich>=13"]
    monkeypatch.setattr(doctor.metadata, "requires", lambda dist: declared if dist == "pvt-deploy" else None)
    rows = {c.key: c for c in collect(probe_encoders=False)}
    assert rows["numpy"].status == "error"
    assert f"numpy {numpy.__version__} installed; pvt-deploy needs >=99" in rows["numpy"].summary
    assert rows["numpy"].hint == "pip install 'numpy>=99'"
    assert rows["pyyaml-not-a-real-dist"].status == "missing"
    assert rows["pyyaml-not-a-real-dist"].hint == "pip install 'pyyaml-not-a-real-dist>=6'"
    if "tritonclient" in rows and rows["tritonclient"].version:  # installed: its extra is held to its range
        assert rows["tritonclient"].status == "error" and "needs <2" in rows["tritonclient"].summary
    assert "tensorrt-not-installed" not in rows and "pytest" not in rows and "rich" not in rows
    assert rows["onnx"].status == "ok"  # not declared in this list: not judged
    table = render_table(list(rows.values()))
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table)
    assert "pvt-deploy needs >=99" in console.export_text()


def editable_install(monkeypatch: pytest.MonkeyPatch, source: Path, installed: list[str], project: str) -> None:
    """pvt-deploy as an editable install of ``source``, whose pyproject.toml's ``[project]`` table holds
    ``project`` after its name, while the install's metadata lists the requirements ``installed``."""
    import json

    from pvt_deploy import doctor

    (source / "pyproject.toml").write_text('[project]\nname = "pvt-deploy"\n' + project, encoding="utf-8")

    class Editable:
        def read_text(self, name: str) -> str | None:
            return json.dumps({"dir_info": {"editable": True}, "url": source.as_uri()}) \
                if name == "direct_url.json" else None

    monkeypatch.setattr(doctor.metadata, "requires", lambda dist: installed if dist == "pvt-deploy" else None)
    real = doctor.metadata.distribution
    monkeypatch.setattr(doctor.metadata, "distribution", lambda dist: Editable() if dist == "pvt-deploy" else real(dist))


def test_an_editable_install_is_judged_by_its_sources_requirements(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """An editable install's metadata is written when it is installed: after a git pull that added a dependency
    (safetensors, today), doctor read the old list and said nothing of the new one, missing. The requirements
    of an editable install are its source's pyproject.toml, extras included as the metadata writes them."""
    from pvt_deploy import doctor

    editable_install(monkeypatch, tmp_path, ["rich>=13"],
                     'dependencies = ["rich>=13", "safetensors-not-a-real-dist>=0.4"]\n'
                     '[project.optional-dependencies]\ntrt = ["tensorrt-not-installed<12,>=10.0"]\n')
    rows = {c.key: c for c in doctor._check_requirements([])}
    assert rows["safetensors-not-a-real-dist"].status == "missing"
    assert rows["safetensors-not-a-real-dist"].hint == "pip install 'safetensors-not-a-real-dist>=0.4'"
    assert set(rows) == {"safetensors-not-a-real-dist"}  # an extra not installed is not asked for
    (tmp_path / "pyproject.toml").write_text("not toml [", encoding="utf-8")
    assert doctor._check_requirements([]) == []  # a source it cannot read: the install's metadata


def test_an_editable_install_says_an_unmet_requirement_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The install's metadata writes a requirement as its own normal form ("rich<1,>=0.1", extras sorted),
    pyproject.toml as its author did (">=0.1,<1"): an editable install read both as two requirements, so one
    unmet package got two rows (or one summary said twice)."""
    from pvt_deploy import doctor

    editable_install(monkeypatch, tmp_path, ["rich<1,>=0.1"], 'dependencies = ["rich>=0.1,<1"]\n')
    rows = doctor._check_requirements([])
    assert [(c.key, c.status) for c in rows] == [("rich", "error")]
    assert rows[0].summary.endswith("installed; pvt-deploy needs <1,>=0.1")


def test_an_editable_installs_extra_keeps_its_own_marker_apart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An extra's requirement with a marker of its own was joined to ``extra == "gpu"`` without brackets:
    ``a or b and extra == "gpu"`` reads ``a or (b and ...)``, a requirement of every install where ``a``
    holds. Read as pip reads markers, it belongs to the extra alone, where its own marker holds."""
    from packaging.requirements import Requirement

    from pvt_deploy import doctor

    editable_install(monkeypatch, tmp_path, [],
                     '[project.optional-dependencies]\ngpu = [\'foo>=1; python_version < "3.12" or sys_platform == "win32"\', '
                     '"bar>=2"]\n')
    foo, bar = (Requirement(r) for r in doctor._editable_requirements() or [])
    assert (foo.name, str(foo.specifier), bar.name, str(bar.specifier)) == ("foo", ">=1", "bar", ">=2")
    old = {"python_version": "3.11", "sys_platform": "linux"}
    assert foo.marker is not None and bar.marker is not None
    assert not foo.marker.evaluate({**old, "extra": ""}) and foo.marker.evaluate({**old, "extra": "gpu"})
    assert not foo.marker.evaluate({"python_version": "3.13", "sys_platform": "linux", "extra": "gpu"})
    assert foo.marker.evaluate({"python_version": "3.13", "sys_platform": "win32", "extra": "gpu"})
    assert bar.marker.evaluate({"extra": "gpu"}) and not bar.marker.evaluate({"extra": ""})


def test_an_uninstalled_pvt_deploy_judges_no_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvt_deploy import doctor

    def missing(dist: str) -> None:
        raise doctor.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(doctor.metadata, "requires", missing)
    assert doctor._requirements() == []
    assert all(c.status != "error" for c in collect(probe_encoders=False) if c.key in ("numpy", "onnx", "av"))


def test_the_mending_pip_install_names_the_distribution_that_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old opencv-python (not our -headless) or onnxruntime-gpu (not onnxruntime) meets the requirement in
    their place; the hint said ``pip install 'opencv-python-headless>=...'`` / ``'onnxruntime>=1.19'``,
    which installs a second package over the same module (the GPU build's providers then go missing).
    It names the one installed, and a requirement that two declarations share is said once."""
    from pvt_deploy import doctor

    real_version = doctor.metadata.version
    installed = {"opencv-python": "4.9.0.80", "onnxruntime-gpu": "1.18.1"}

    def version(dist: str) -> str:
        if dist in installed:
            return installed[dist]
        if dist in ("opencv-python-headless", "onnxruntime"):
            raise doctor.metadata.PackageNotFoundError(dist)
        return real_version(dist)

    declared = ["opencv-python-headless>=4.10.0.84", "onnxruntime>=1.19", 'onnxruntime-gpu>=1.19; extra == "gpu"']
    monkeypatch.setattr(doctor.metadata, "requires", lambda dist: declared if dist == "pvt-deploy" else None)
    monkeypatch.setattr(doctor.metadata, "version", version)
    rows = {c.key: c for c in doctor._check_requirements([doctor.Check("opencv", "OpenCV", "ok"),
                                                          doctor.Check("onnxruntime", "ONNX Runtime", "ok")])}
    assert set(rows) == {"opencv", "onnxruntime"}
    assert rows["opencv"].status == "error" and rows["opencv"].hint == "pip install 'opencv-python>=4.10.0.84'"
    assert rows["opencv"].summary == "opencv-python 4.9.0.80 installed; pvt-deploy needs >=4.10.0.84"
    assert rows["onnxruntime"].hint == "pip install 'onnxruntime-gpu>=1.19'"
    assert rows["onnxruntime"].summary == "onnxruntime-gpu 1.18.1 installed; pvt-deploy needs >=1.19"


def test_a_command_under_a_torch_that_cannot_use_this_numpy_ends_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The same broken pair made ``infer`` (PyTorch backend) end in a traceback, exit 1; it is one line saying
    what doctor's PyTorch row says, with its mend, and the exit code of a runtime not available here."""
    import numpy
    import torch
    from cli_run import run

    from pvt_deploy.assets import sample_images

    def from_numpy(array: object) -> None:
        raise RuntimeError("Numpy is not available")

    monkeypatch.setattr(torch, "from_numpy", from_numpy)
    monkeypatch.setattr(numpy, "__version__", "2.2.6")
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", "pvt_v2_b0-cls",
                       "--backend", "torch", "--imgsz", "32", "--no-save")
    lines = [ln for ln in err.splitlines() if ln.startswith("error:") or "Traceback" in ln]
    assert code == 3 and lines == [
        f"error: PyTorch {torch.__version__} cannot exchange arrays with NumPy 2.2.6 (RuntimeError: Numpy is not "
        "available) (pip install 'numpy<2' (this torch was built against NumPy 1.x))"], err


def test_a_requirements_marker_is_judged_beyond_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A requirement marked ``extra == "gpu"`` counted whenever the extra's package was installed, whatever
    the rest of its marker said (``python_version``, ``platform_machine``: pins that differ by machine), so
    doctor flagged a pin meant for another Python or machine. Markers are judged as pip judges them (with
    ``packaging``, which onnxruntime requires); where ``packaging`` cannot be imported, a marker beyond the
    extra is not judged, and a requirement it leaves unmet says so."""
    from pvt_deploy import doctor

    real_version = doctor.metadata.version

    def version(dist: str) -> str:
        return "1.18.1" if dist == "onnxruntime-gpu" else real_version(dist)

    declared = ['onnxruntime-gpu>=99; python_version < "3" and extra == "gpu"',  # another machine's pin
                'onnxruntime-gpu>=98; python_version >= "3" and extra == "gpu"',  # this one's
                'rich>=999; platform_machine == "no-such-machine"']
    monkeypatch.setattr(doctor.metadata, "requires", lambda dist: declared if dist == "pvt-deploy" else None)
    monkeypatch.setattr(doctor.metadata, "version", version)
    monkeypatch.setattr(doctor, "_editable_requirements", lambda: None)
    rows = {c.key: c for c in doctor._check_requirements([doctor.Check("onnxruntime", "ONNX Runtime", "ok")])}
    assert set(rows) == {"onnxruntime"}, rows
    assert rows["onnxruntime"].summary == "onnxruntime-gpu 1.18.1 installed; pvt-deploy needs >=98"

    for name in ("packaging", "packaging.markers"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails: as where packaging is not installed
    rows = {c.key: c for c in doctor._check_requirements([doctor.Check("onnxruntime", "ONNX Runtime", "ok")])}
    assert set(rows) == {"onnxruntime", "rich"}, rows
    summary = rows["onnxruntime"].summary
    assert "needs >=99 (where python_version < \"3\"" in summary and "not judged" in summary, summary
    assert "needs >=98" in summary and "packaging" in summary
    assert "not judged" in rows["rich"].summary and rows["rich"].status == "error"
