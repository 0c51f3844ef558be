"""Shared test setup: deterministic, quiet, and bounded to this machine's cores."""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

# Typer and Rich draw for a terminal (colour and escape codes, Typer's width) where the environment says so,
# whatever the output is: GitHub Actions (GITHUB_ACTIONS), FORCE_COLOR or PY_COLORS (many CI configurations,
# tox), TTY_COMPATIBLE, TERMINAL_WIDTH. The tests read the plain text a pipe gets; a test that wants a terminal
# or a width sets it itself. Before Typer is imported: it reads them once.
for _name in ("GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERMINAL_WIDTH"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True, scope="session")
def _temporary_files_in_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The temporary folder of the tests and of every process they start (tempfile's, TMPDIR: ONNX Runtime's
    quantization folders ort.quant.* and pre.quant.*, onnxslim's, the profiler's trace) is this worker's own
    under pytest's root, which pytest removes after a run that passes and rotates away. In /tmp, what a run
    killed midway (or a library that does not clean up) left there stayed for good."""
    folder = tmp_path_factory.mktemp("tempfiles", numbered=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(folder))
        mp.setattr(tempfile, "tempdir", str(folder))
        yield


@pytest.fixture(autouse=True, scope="session")
def _frozen_imports() -> None:
    """What collecting the tests made (torch, ONNX, onnxslim and the package imported: ~190k objects), which
    lives as long as the session, is left out of every later garbage collection (gc.freeze). Each full
    collection (bench collects before and after each backend; Python's own) traversed all of it again: 44 of
    them took 5.2 s of 47 s of CPU in bench's tests, 1.0 s frozen. What the tests make is collected as before."""
    gc.collect()
    gc.freeze()


def no_cuda_reason() -> str | None:
    """Why CUDA tests cannot run here (PyTorch missing or without a GPU), or None where they can."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None
