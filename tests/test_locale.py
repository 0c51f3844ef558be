"""Text files are UTF-8 whatever the locale.

A machine whose locale is not UTF-8 (``PYTHONUTF8=0 LC_ALL=C``: Python's text files are ASCII there)
made mypy crash in CI while the stub repair read NVIDIA's stubs, and would make pvt-deploy fail to
write a non-ASCII name into an artifact, or write one another machine reads differently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_ascii(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python whose text files and standard streams are ASCII; skip where this Python
    cannot be made so (then the tests here would pass without testing anything)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    probe = "import locale, sys; print(locale.getpreferredencoding(False), sys.stdout.encoding)"
    encodings = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    if any(e.lower().replace("-", "") == "utf8" for e in encodings.stdout.split()):
        pytest.skip(f"LC_ALL=C PYTHONUTF8=0 does not make this Python's text ASCII ({encodings.stdout.strip()})")
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def test_atomic_text_is_utf8_under_an_ascii_locale(tmp_path: Path) -> None:
    code = (
        "import sys, json; from pathlib import Path\n"
        "from pvt_deploy.utils.files import atomic_write_text\n"
        "out = Path(sys.argv[1])\n"
        "atomic_write_text(out / 'name.txt', 'caf\\u00e9 \\u732b')\n"
    )
    proc = _run_ascii(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "name.txt").read_bytes() == "café 猫".encode()


def test_stub_repair_reads_the_tensorrt_stubs_under_an_ascii_locale(tmp_path: Path) -> None:
    """What crashed mypy in CI: the stubs hold non-ASCII characters (9 lines of tensorrt.pyi)."""
    from test_tensorrt_typecheck import _package_dir

    if _package_dir("tensorrt_bindings") is None:
        pytest.skip("tensorrt-stubs not installed (pip install --no-deps tensorrt-stubs)")
    code = (
        "import sys; from pathlib import Path\n"
        "from test_tensorrt_typecheck import repair_stubs\n"
        "print(repair_stubs(Path(sys.argv[1]) / 'stubs'))\n"
    )
    proc = _run_ascii(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    repaired = (tmp_path / "stubs" / "tensorrt_bindings" / "tensorrt.pyi").read_text(encoding="utf-8")
    assert any(ord(ch) > 127 for ch in repaired) and "builtins.bool" in repaired


def test_cli_prints_under_an_ascii_locale(tmp_path: Path) -> None:
    """`pvt-deploy models` prints a table with dashes; under an ASCII locale it was a UnicodeEncodeError
    traceback and exit 1. A character the terminal cannot show is now written as its escape."""
    code = "import sys; sys.argv = ['pvt-deploy', 'models']; from pvt_deploy.cli import main; main()"
    proc = _run_ascii(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pvt_v2_b0" in proc.stdout and "\\u2014" in proc.stdout and "Traceback" not in proc.stderr
