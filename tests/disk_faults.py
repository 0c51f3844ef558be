"""A file the disk fails to read, for the tests of what a read error (EIO) is told."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest


def failing_disk(path: Path) -> Path:
    """``path`` made a file whose read fails with EIO, as a failing disk's does: Linux's /proc/self/mem read from
    offset 0 (no memory mapped there) is a regular file whose read says 'Input/output error'."""
    path.unlink(missing_ok=True)
    path.symlink_to("/proc/self/mem")
    with pytest.raises(OSError) as caught, path.open("rb") as f:
        f.read()
    assert caught.value.errno == errno.EIO
    return path
