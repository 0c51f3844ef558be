"""The Python API and the runtimes as a program embedding them uses them (session 46)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runtime_artifacts import cached_export

from pvt_deploy.runtimes.loader import load_backend


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def test_pytorch_takes_a_read_only_array_without_pytorchs_warning(cls_export: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only feed (``np.frombuffer`` of a request's bytes, a memory-mapped file) reached
    ``torch.from_numpy`` as it was, and PyTorch warned that writing to the tensor 'will result in undefined
    behavior' (once a process, so the spy below stands in for the warning: it refuses what PyTorch warns
    of). The backend copies such an array; its outputs are a writable copy's."""
    import torch

    backend, _ = load_backend(cls_export, backend="torch")
    from_numpy = torch.from_numpy

    def strict(array: np.ndarray) -> Any:
        assert array.flags.writeable, "a read-only array given to torch.from_numpy (PyTorch warns)"
        return from_numpy(array)

    monkeypatch.setattr(torch, "from_numpy", strict)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    read_only = np.frombuffer(x.tobytes(), np.float32).reshape(x.shape)
    assert not read_only.flags.writeable
    with backend:
        name = backend.inputs[0].name
        want = backend.infer({name: x.copy()})
        got = backend.infer({name: read_only})
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)
