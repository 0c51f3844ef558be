"""The contract of export/swap.py, the one way export folders and Triton model folders are replaced
(their end-to-end behaviour, kills and concurrent runs included, is in test_export_manifest.py and
test_triton_export.py): built aside, swapped in whole, the user's entries kept, nothing hidden left."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pvt_deploy.export.swap import SwappedFolder, scratch


def _ours(old: Path) -> Callable[[str], bool]:
    return lambda name: name in ("manifest.json", "1") or name.startswith(".pvt-")


def _folder(tmp_path: Path, inside: bool) -> SwappedFolder:
    return SwappedFolder(tmp_path / "repo" / "m", "the folder m", _ours, inside=inside)


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _previous(folder: SwappedFolder) -> dict[str, bytes | None]:
    target = folder.target
    (target / "1").mkdir(parents=True)
    (target / "1" / "model.onnx").write_bytes(b"old graph")
    (target / "manifest.json").write_text("old")
    (target / "notes.txt").write_text("the user's")
    return _tree(target.parent)


@pytest.mark.parametrize("inside", [False, True], ids=["beside", "inside"])
def test_a_block_that_raises_leaves_the_previous_folder_as_it_was_and_nothing_hidden(
        tmp_path: Path, inside: bool) -> None:
    folder = _folder(tmp_path, inside)
    before = _previous(folder)
    with pytest.raises(RuntimeError, match="fill failed"), folder.replacing() as staging:
        assert (staging.parent == folder.target) is inside  # a Triton model's is hidden inside it
        (staging / "manifest.json").write_text("new")
        raise RuntimeError("fill failed")
    assert _tree(folder.target.parent) == before


@pytest.mark.parametrize("inside", [False, True], ids=["beside", "inside"])
def test_a_first_folder_whose_block_raises_leaves_nothing(tmp_path: Path, inside: bool) -> None:
    """Inside, the target is made to hold the staging folder: it goes again (an empty Triton model folder
    stops a starting server). The parent folders made for it go too (an export Ctrl-C'd in its first
    seconds left an empty exports/ in a folder that never had one); a parent that was there stays."""
    folder = _folder(tmp_path, inside)
    with pytest.raises(KeyboardInterrupt), folder.replacing() as staging:
        (staging / "manifest.json").write_text("new")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    folder.target.parent.mkdir()
    with pytest.raises(KeyboardInterrupt), folder.replacing():
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == [folder.target.parent] and list(folder.target.parent.iterdir()) == []


@pytest.mark.parametrize("inside", [False, True], ids=["beside", "inside"])
def test_the_swap_replaces_what_is_ours_and_keeps_the_users_entries(tmp_path: Path, inside: bool) -> None:
    folder = _folder(tmp_path, inside)
    _previous(folder)
    (folder.target / "2").mkdir()  # another version: not ours
    with folder.replacing() as staging:
        (staging / "1").mkdir()
        (staging / "1" / "model.onnx").write_bytes(b"new graph")
        (staging / "manifest.json").write_text("new")
    assert _tree(folder.target.parent) == {"m": None, "m/1": None, "m/1/model.onnx": b"new graph", "m/2": None,
                                           "m/manifest.json": b"new", "m/notes.txt": b"the user's"}


def test_a_users_entry_the_new_folder_also_has_is_kept_aside_and_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Never lost: the old folder stays, hidden, with the entry that could not move, and a warning says where."""
    folder = _folder(tmp_path, inside=False)
    _previous(folder)
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.export"), folder.replacing() as staging:
        (staging / "notes.txt").write_text("generated")
    assert (folder.target / "notes.txt").read_text() == "generated"
    aside = [p for p in folder.target.parent.iterdir() if p != folder.target]
    assert len(aside) == 1 and aside[0].name.startswith(folder.aside_prefix)
    assert (aside[0] / "notes.txt").read_text() == "the user's"
    assert "could not move notes.txt" in caplog.text and str(aside[0]) in caplog.text


def test_swap_failed_swaps_the_folder_in_and_raises(tmp_path: Path) -> None:
    """As a parity failure where no export was: the files are written, and the error still raised."""
    folder = _folder(tmp_path, inside=False)
    with pytest.raises(ValueError, match="gate"), \
            folder.replacing(swap_failed=lambda e: isinstance(e, ValueError)) as staging:
        (staging / "manifest.json").write_text("failed its gate")
        raise ValueError("gate")
    assert _tree(folder.target.parent) == {"m": None, "m/manifest.json": b"failed its gate"}


def test_the_next_run_sweeps_a_staging_folder_no_run_holds(tmp_path: Path) -> None:
    """A staging folder whose lock is free (its run was killed) goes; the target is untouched by that."""
    for inside in (False, True):
        folder = _folder(tmp_path / str(inside), inside)
        before = _previous(folder)
        left = folder.new_staging()  # made, never locked: as a killed run's, once the kernel dropped its lock
        (left / "manifest.json").write_text("half")
        folder.sweep()
        assert _tree(folder.target.parent) == before


def test_a_scratch_folder_goes_at_the_end_and_a_killed_ones_at_the_next_start(tmp_path: Path) -> None:
    left = tmp_path / ".pvt-ext-0badf00d-1-ab12"  # a killed extension's: no run holds it
    left.mkdir()
    with pytest.raises(OSError), scratch(tmp_path, ".pvt-ext-") as path:
        assert not left.exists() and path.parent == tmp_path
        (path / "model.fp16.onnx").write_bytes(b"variant")
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("inside", [False, True], ids=["beside", "inside"])
def test_ctrl_c_between_the_renames_waits_for_the_swap(tmp_path: Path, inside: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right after the old folder went aside is held until the new one is in place and the user's
    entries are in it (a Triton model folder's staging folder goes aside with it, and is renamed from there)."""
    import os
    import signal

    folder = _folder(tmp_path, inside)
    _previous(folder)
    rename = os.rename

    def interrupted_rename(src: str, dst: str) -> None:
        rename(src, dst)
        if folder.aside_prefix in os.fspath(dst):
            signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt), folder.replacing() as staging:
            (staging / "manifest.json").write_text("new")
            monkeypatch.setattr(os, "rename", interrupted_rename)
    finally:
        monkeypatch.setattr(os, "rename", rename)
        signal.signal(signal.SIGINT, previous)
    assert _tree(folder.target.parent) == {"m": None, "m/manifest.json": b"new", "m/notes.txt": b"the user's"}


def _flock_failing(monkeypatch: pytest.MonkeyPatch, code: int, fails: Callable[[Path, int], bool]) -> None:
    """fcntl.flock raises OSError(``code``) where ``fails`` of the locked path and how many times it was
    locked so far (1 the first) says so; elsewhere it locks."""
    import collections
    import fcntl
    import os

    real, times = fcntl.flock, collections.Counter[Path]()

    def flock(fd: int, operation: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        times[path] += 1
        if fails(path, times[path]):
            raise OSError(code, os.strerror(code))
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names locked files through /proc")


@needs_proc
def _swaps_and_scratches(folder: SwappedFolder, tmp_path: Path) -> None:
    """``folder`` (with ``_previous``'s files) is swapped for a new manifest, keeping the user's file, and a
    scratch folder is made and goes: what an export does where its locks are not to be had."""
    with folder.replacing() as staging:
        (staging / "manifest.json").write_text("new")
    assert _tree(folder.target.parent) == {"m": None, "m/manifest.json": b"new", "m/notes.txt": b"the user's"}
    with scratch(tmp_path, ".pvt-ext-") as path:
        (path / "model.fp16.onnx").write_bytes(b"variant")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


@pytest.mark.parametrize("inside", [False, True], ids=["beside", "inside"])
def test_a_file_system_without_locks_swaps_unlocked(tmp_path: Path, inside: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOLCK (NFS without its lock service) and the like say there are no locks here: the swap goes on."""
    import errno

    folder = _folder(tmp_path, inside)
    _previous(folder)
    _flock_failing(monkeypatch, errno.ENOLCK, lambda path, n: True)
    _swaps_and_scratches(folder, tmp_path)


@pytest.mark.parametrize("inside", [False, True], ids=["beside", "inside"])
@pytest.mark.parametrize("platform", ["windows", "unreadable"])
def test_a_platform_without_flock_swaps_unlocked(tmp_path: Path, inside: bool, platform: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no fcntl, and no folder opens there (os.open of one is EACCES): a folder's lock opened
    the folder before finding that there are no locks, and its EACCES, no 'no locks' error, failed every
    export there ('cannot write to the folder m (Permission denied)'). No locks: nothing is opened. The
    same EACCES on Linux, from a folder its user may write to but not read (mode 0300; root reads any, so
    os.open is made to refuse here): it opens for none of that user's runs, no locks to be had, as before
    abc748c, not an error."""
    import errno
    import os
    import sys

    real_open = os.open

    def windows_open(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.path.isdir(path) and sys._getframe(1).f_globals["__name__"].startswith("pvt_deploy."):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)  # not shutil's (rmtree)
        return real_open(path, flags, *args, **kwargs)

    folder = _folder(tmp_path, inside)
    _previous(folder)
    if platform == "windows":
        monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl: ImportError, as on Windows
    monkeypatch.setattr(os, "open", windows_open)
    _swaps_and_scratches(folder, tmp_path)


@needs_proc
@pytest.mark.parametrize(("inside", "lock", "error"), [
    (False, "parent", "cannot write to the folder m (Input/output error)"),
    (False, "staging", "cannot write to the folder m (Input/output error)"),
    (False, "swap", "cannot replace the folder m (Input/output error); it is unchanged"),
    (True, "parent", "cannot write to the folder m (Input/output error)"),
    (True, "staging", "cannot write to the folder m (Input/output error)"),
], ids=["beside-parent", "beside-staging", "beside-swap", "inside-parent", "inside-staging"])
def test_another_lock_error_is_an_error_and_the_folder_stays_as_it_was(
        tmp_path: Path, inside: bool, lock: str, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any OSError of flock() read as 'no locks on this file system': the swap went on unlocked, where
    another run's sweep takes an unlocked staging folder for a killed run's and deletes it mid-build, and
    two swaps into one folder no longer take turns. Only the errors that say so (files.lacks_locks) go on
    unlocked; another (EIO) of the parent's lock, the staging folder's or the parent's again for the swap
    is the one-line error, and nothing is left."""
    import errno

    from pvt_deploy.errors import PvtDeployError

    folder = _folder(tmp_path, inside)
    before = _previous(folder)
    parent = folder.target.parent
    fails = {"parent": lambda path, n: path == parent and n == 1,
             "staging": lambda path, n: path.name.startswith(folder.staging_prefix),
             "swap": lambda path, n: path == parent and n == 2}[lock]
    _flock_failing(monkeypatch, errno.EIO, fails)
    ran = False
    with pytest.raises(PvtDeployError) as refused, folder.replacing() as staging:
        ran = True
        (staging / "manifest.json").write_text("new")
    assert str(refused.value) == error
    assert ran is (lock == "swap")
    assert _tree(parent) == before


@needs_proc
@pytest.mark.parametrize("lock", ["parent", "scratch"])
def test_a_scratch_folder_that_cannot_be_locked_is_an_error_and_leaves_nothing(
        tmp_path: Path, lock: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pvt_deploy.errors import InputError

    fails = {"parent": lambda path, n: path == tmp_path,
             "scratch": lambda path, n: path.name.startswith(".pvt-ext-")}[lock]
    _flock_failing(monkeypatch, errno.EIO, fails)
    with pytest.raises(InputError, match=rf"^cannot write to {tmp_path} \(Input/output error\)$"), \
            scratch(tmp_path, ".pvt-ext-"):
        pytest.fail("the block ran without its lock")
    assert list(tmp_path.iterdir()) == []
