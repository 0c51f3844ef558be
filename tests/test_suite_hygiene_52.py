"""The test suite keeps what it writes under pytest's root (tests/conftest.py): nothing in /tmp outside it."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def test_temporary_files_of_the_tests_and_their_children_are_under_pytests_root(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """tempfile's folder, in this process and in a process a test starts, is under the run's base folder (the
    worker's under pytest-xdist), where pytest removes it; ONNX Runtime's quantization left ort.quant.* and
    pre.quant.* folders in /tmp when a run was killed."""
    root = tmp_path_factory.getbasetemp().resolve()
    made = Path(tempfile.mkdtemp(prefix="hygiene-"))
    try:
        assert made.resolve().is_relative_to(root), (made, root)
    finally:
        made.rmdir()
    child = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.mkdtemp(prefix='hygiene-'))"],
                           capture_output=True, text=True, check=True)
    theirs = Path(child.stdout.strip())
    try:
        assert theirs.resolve().is_relative_to(root), (theirs, root)
    finally:
        theirs.rmdir()
