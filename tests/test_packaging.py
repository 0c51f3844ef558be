"""The wheel a non-editable install builds (``pip install .``, as the Docker images do) holds the whole
package, and that installed copy runs: the bundled photos, clip and class lists are data files that an
editable install finds in the source tree whether or not the package declares them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "No module named" in build.stderr and "setuptools" in build.stderr:
        pytest.skip("setuptools is not installed here: pip cannot build the wheel without its build isolation")
    assert build.returncode == 0, build.stderr
    (found,) = out.glob("pvt_deploy-*.whl")
    return found


def test_the_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    package = ROOT / "pvt_deploy"
    files = {p.relative_to(ROOT).as_posix() for p in package.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}
    with zipfile.ZipFile(wheel) as z:
        held = {n for n in z.namelist() if n.startswith("pvt_deploy/")}
    assert files - held == set()
    assert "pvt_deploy/py.typed" in held  # type checkers read the API's annotations (PEP 561)


def test_the_installed_wheel_runs_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    script = ("import pvt_deploy, sys\n"
              "from pvt_deploy import assets\n"
              "from pvt_deploy.data import class_names\n"
              f"assert pvt_deploy.__file__.startswith({str(target)!r}), pvt_deploy.__file__\n"
              "assert all(p.is_file() for p in assets.sample_images()) and assets.sample_video().is_file()\n"
              "assert [len(class_names(d)) for d in ('imagenet', 'coco', 'ade20k')] == [1000, 80, 150]\n"
              "sys.argv = ['pvt-deploy', 'models', '--task', 'classify', '--json']\n"
              "from pvt_deploy.cli import main\n"
              "main()\n")
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert '"pvt_v2_b0-cls"' in run.stdout
