"""Folders replaced as a whole: built aside, swapped in once complete, and what killed runs left cleared.

An export folder (export/onnx.py) and a Triton model folder (export/triton.py) are each replaced by
building the new folder in a hidden staging folder and renaming it into place only once it is complete,
so that a failed, interrupted or killed run never leaves a folder whose files disagree, and leaves the
previous one as it was. The swap renames the old folder aside (``.<name>.<tag>-old-…``), the new one into
its place, and moves the entries of the old one that are not pvt-deploy's (the user's notes, checkpoints,
other model versions) into the new one.

Where the staging folder is: beside the folder it replaces (``.<name>.<tag>-new-…``: an export folder), or
hidden inside it (``.<tag>-new-…``: a Triton model folder, because tritonserver polls the repository and
tries to load, and fails on, every folder in it, while it ignores a model folder's entries that are not
numeric version folders). Inside, the staging folder moves aside with the old folder and is renamed from
there into its place, and the parent's lock is held for the whole build: a second run swapping meanwhile
would take the staging folder away half written.

Killed runs. Each hidden folder is named ``<prefix><host>-<pid>-<random>`` and locked (``flock``) for the
life of its run; the kernel drops the lock when the process dies, however it dies. The next run, holding
the parent's lock, deletes a staging folder whose lock is free and gives an old folder set aside by a swap
that was killed back (into the place of the folder where that is missing, else its user's entries into
the new one). Scratch folders (:func:`scratch`: the variants added to an export) are swept the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pvt_deploy.errors import InputError, PvtDeployError
from pvt_deploy.utils.files import (
    lacks_locks,
    lock,
    make_folders,
    remove_made_folders,
    unheld,
    unwritable_reason,
)

log = logging.getLogger("pvt_deploy.export")

#: The longest name most file systems take, in bytes (ext4, XFS, Btrfs, tmpfs, NTFS's 255 UTF-16 units and more)
NAME_MAX = 255
#: The longest ``<owner>-XXXX`` a hidden folder's name ends with (:func:`new_hidden`): a host's CRC and a PID of up
#: to 7 digits (Linux's pid_max is 2^22 at most)
_OWNER_TAIL = len("0badf00d-4194304-abcd")

#: Which entries of a folder being replaced are pvt-deploy's (replaced with it) and not the user's
#: (moved into the new folder): given that old folder, a test of an entry's name.
Ours = Callable[[Path], Callable[[str], bool]]


@dataclass(frozen=True)
class SwappedFolder:
    """A folder that pvt-deploy replaces as a whole (see the module's text).

    ``what`` names it in messages (``output folder exports/x``, ``the Triton model repo/m``); ``tag`` names
    its hidden folders; ``inside``: its staging folder is built inside it, under the parent's lock."""

    target: Path
    what: str
    ours: Ours
    tag: str = "pvt"
    inside: bool = False

    @property
    def staging_prefix(self) -> str:
        return f".{self.tag}-new-" if self.inside else f".{self._named}.{self.tag}-new-"

    @property
    def aside_prefix(self) -> str:
        return f".{self._named}.{self.tag}-old-"

    @property
    def _named(self) -> str:
        """The target's name as its hidden folders beside it give it (``.<name>.<tag>-new-<owner>-XXXX``, and
        ``-old-``): where that would pass :data:`NAME_MAX` with the longest owner (:data:`_OWNER_TAIL`), the name
        cut, a whole character at a time, and ``~`` and 16 hex digits of its SHA-256 after it, so that a folder of
        any name the file system takes can be replaced (a name of over 224 bytes, 75 CJK characters, was refused:
        its staging folder's was too long). The same for every run, whatever its PID: a run's sweep finds those
        a killed one left."""
        name = self.target.name
        fixed = len(f"..{self.tag}-old-") + _OWNER_TAIL
        if len(os.fsencode(name)) + fixed <= NAME_MAX:
            return name
        digest = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
        while len(os.fsencode(name)) + len(digest) + fixed > NAME_MAX:
            name = name[:-1]
        return name + digest

    def unwritable(self) -> str | None:
        """Why :attr:`target` cannot be replaced, in the words of :func:`~pvt_deploy.utils.files.unwritable_reason`:
        its parent takes no new files, or a name to be made there is longer than the file system takes: the
        target's own, where it is not there yet, or its hidden folders' (:attr:`aside_prefix`; the staging folder's
        beside it is as long). None where it can be. Nothing is made (a probe file in the parent, at once removed)."""
        if not os.path.lexists(self.target):
            reason = unwritable_reason(self.target)
            if reason is not None:
                return reason
        return unwritable_reason(new_hidden(self.target.parent, self.aside_prefix, create=False))

    @property
    def _home(self) -> Path:
        """Where the staging folders are."""
        return self.target if self.inside else self.target.parent

    def new_staging(self) -> Path:
        """A new empty staging folder (unlocked: :meth:`replacing` locks and sweeps)."""
        return new_hidden(self._home, self.staging_prefix, create=True)

    @contextlib.contextmanager
    def replacing(self, *, swap_failed: Callable[[BaseException], bool] = lambda e: False) -> Iterator[Path]:
        """Yield an empty staging folder; when the block succeeds, swap it in for :attr:`target`; when it
        raises, delete it (the target as it was, byte for byte), unless ``swap_failed`` of the exception
        says to swap it in anyway (then the exception is raised after the swap). A folder the setup cannot
        make is an :class:`InputError`; what the block raises is raised as it is. The parent folders made
        for the target (``exports/``) go with it where nothing was swapped in and they are still empty."""
        made = False
        parents: list[Path] = []
        staging: Path | None = None
        with contextlib.ExitStack() as locked:  # the parent's lock, from the sweep on (see the module's text)
            try:
                parents = make_folders(self.target.parent)
                locked.enter_context(folder_lock(self.target.parent))  # no sweep sees the new folder unlocked
                self.sweep()
                if self.inside:
                    made = not self.target.exists()
                    self.target.mkdir(exist_ok=True)
                staging = self.new_staging()
                alive = hold(staging)
            except OSError as e:
                if staging is not None:
                    discard(staging)
                self._unmake(made)
                locked.close()
                remove_made_folders(parents)
                raise InputError(f"cannot write to {self.what} ({e.strerror or e})") from e
            if not self.inside:
                locked.close()  # built unlocked; the swap takes the lock again
            swapped = False
            try:
                try:
                    yield staging
                except BaseException as e:
                    if swap_failed(e):
                        self.swap_in(staging, locked=self.inside)
                        swapped = True
                    raise
                self.swap_in(staging, locked=self.inside)
            except BaseException:
                if not swapped:
                    discard(staging)
                    self._unmake(made)
                    locked.close()
                    remove_made_folders(parents)
                raise
            finally:
                if alive is not None:
                    os.close(alive)

    def _unmake(self, made: bool) -> None:
        """Remove the target made empty for a staging folder inside it (an empty Triton model folder stops
        a starting server: 'could not determine backend')."""
        if made:
            with contextlib.suppress(OSError):
                self.target.rmdir()

    def swap_in(self, staging: Path, *, locked: bool = False) -> None:
        """Rename :attr:`target` aside and the finished ``staging`` into its place, carry the user's entries
        over and delete the old folder. Ctrl-C waits until this is done; if a rename fails, the target is
        left as it was (:class:`PvtDeployError`). Swaps into one parent take turns on its lock, taken here
        unless the caller holds it (``locked``)."""
        from pvt_deploy.utils.signals import interrupts_deferred

        target = self.target
        with interrupts_deferred(), contextlib.ExitStack() as turn:
            if not locked:
                try:
                    turn.enter_context(folder_lock(target.parent))
                except OSError as e:
                    raise PvtDeployError(f"cannot replace {self.what} ({e.strerror or e}); it is unchanged") from e
            aside = None
            if os.path.lexists(target):
                with contextlib.suppress(OSError):
                    os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
                aside = new_hidden(target.parent, self.aside_prefix, create=False)
                try:
                    os.rename(target, aside)  # a staging folder inside goes with it
                except OSError as e:
                    raise PvtDeployError(f"cannot replace {self.what} ({e.strerror or e}); it is unchanged") from e
            try:
                os.rename(aside / staging.name if aside is not None and staging.parent == target else staging,
                          target)
            except BaseException as e:
                if aside is not None:
                    os.rename(aside, target)
                if isinstance(e, OSError):
                    raise PvtDeployError(f"cannot replace {self.what} ({e.strerror or e}); it is unchanged") from e
                raise
            if aside is not None:
                self.carry_over(aside)

    def carry_over(self, aside: Path) -> None:
        """Move the entries of the old folder ``aside`` that are not pvt-deploy's into :attr:`target` and
        delete the rest; what cannot move (a name the new folder also has) stays in ``aside``, which is then
        kept and named in a warning."""
        ours = self.ours(aside)
        entries = sorted(aside.iterdir())
        replaced = [p.name for p in entries if ours(p.name) and not p.name.startswith(".")]
        kept, stuck = [], []
        for entry in entries:
            if ours(entry.name):
                continue
            dest = self.target / entry.name
            try:
                if os.path.lexists(dest):
                    raise FileExistsError(dest)
                os.rename(entry, dest)
                kept.append(entry.name)
            except OSError:
                stuck.append(entry.name)
        if replaced:
            log.info("replaced in %s: %s", self.what, ", ".join(replaced))
        if kept:
            log.info("kept in %s the files pvt-deploy did not make: %s", self.what, ", ".join(kept))
        if stuck:
            log.warning("could not move %s into %s; they are in %s", ", ".join(stuck), self.what, aside)
        else:
            shutil.rmtree(aside, ignore_errors=True)

    def sweep(self) -> None:
        """Clear what runs killed while replacing :attr:`target` left (:func:`owner_gone`): an old folder
        set aside goes back where the target is missing (or empty: a Triton model folder is made before
        its staging folder), else its user's entries move into the target; then staging folders are
        deleted. Call with the parent's lock held (a live swap holds it, so an old folder seen here is a
        killed one's)."""
        target = self.target
        with contextlib.suppress(OSError):
            for entry in sorted(target.parent.iterdir()):
                if not owner_gone(entry, self.aside_prefix):
                    continue
                if not entry.is_dir():
                    discard(entry)
                elif not target.is_dir() or not any(target.iterdir()):
                    with contextlib.suppress(OSError):
                        target.rmdir()
                    os.rename(entry, target)
                else:
                    self.carry_over(entry)
                log.info("cleared %s, left by an export that was killed", entry)
        sweep_scratch(self._home, self.staging_prefix)


@contextlib.contextmanager
def scratch(parent: Path, prefix: str) -> Iterator[Path]:
    """A new hidden folder ``<prefix>…`` in ``parent`` to work in, locked while the block runs and deleted
    at its end; made (under ``parent``'s lock) after deleting those that killed runs left. One that cannot
    be made or locked is an :class:`InputError`, and nothing is left."""
    path: Path | None = None
    try:
        with folder_lock(parent):
            sweep_scratch(parent, prefix)
            path = new_hidden(parent, prefix, create=True)
            alive = hold(path)
    except OSError as e:
        if path is not None:
            discard(path)
        raise InputError(f"cannot write to {parent} ({e.strerror or e})") from e
    try:
        yield path
    finally:
        discard(path)
        if alive is not None:
            os.close(alive)


def sweep_scratch(parent: Path, prefix: str) -> None:
    """Delete the hidden ``<prefix>…`` folders in ``parent`` that killed runs left (:func:`owner_gone`)."""
    with contextlib.suppress(OSError):
        for entry in sorted(parent.iterdir()):
            if owner_gone(entry, prefix):
                discard(entry)
                log.info("cleared %s, left by an export that was killed", entry)


def owner() -> str:
    """``<host>-<pid>`` of this process, host as a CRC of its name: who made a hidden folder."""
    import socket
    import zlib

    return f"{zlib.crc32(socket.gethostname().encode()):08x}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but not ours to signal
    return True


def new_hidden(parent: Path, prefix: str, *, create: bool) -> Path:
    """A fresh name ``<prefix><host>-<pid>-<random>`` in ``parent`` (beside what it will replace or be
    moved into, so that renames are atomic), naming the process that made it (:func:`owner_gone`); made
    an empty folder where ``create``."""
    import secrets

    while True:
        path = parent / f"{prefix}{owner()}-{secrets.token_hex(2)}"
        if not create:
            if not os.path.lexists(path):
                return path
            continue
        try:
            path.mkdir()  # 0777 & ~umask, like any folder the user makes
            return path
        except FileExistsError:
            continue


def owner_gone(entry: Path, prefix: str) -> bool:
    """Whether ``entry`` is ``<prefix><host>-<pid>-<random>`` (:func:`new_hidden`) made by a run that is
    gone. A live run holds a lock on its folder (:func:`hold`), which the kernel drops when the process
    dies, however it dies: a folder whose lock is free was left by a killed run, whatever host, container
    or PID made it (a name cannot tell: each ``docker run`` has a new host name, and often the PID of the
    run before). Where the file system has no locks, the name decides: made on this host by a process that
    is not running."""
    if not entry.name.startswith(prefix):
        return False
    gone = unheld(entry)
    if gone is not None:
        return gone
    made_by = entry.name[len(prefix):].split("-")
    return (len(made_by) == 3 and made_by[0] == owner().split("-")[0] and made_by[1].isdigit()
            and not _alive(int(made_by[1])))


def hold(folder: Path) -> int | None:
    """Lock a new hidden folder for the life of its run (see :func:`owner_gone`): the descriptor to close
    at the end, or None where the file system has no locks (:func:`lacks_locks`). Another error of the lock
    is raised: a run that went on without it would have its folder deleted under it, as a killed run's."""
    try:
        return lock(folder, wait=False)
    except OSError as e:
        if lacks_locks(e):
            return None
        raise


@contextlib.contextmanager
def folder_lock(parent: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder whose entries are renamed: two runs swapping into one folder
    take turns instead of renaming each other's folders aside (which stranded one of them, with the
    user's files, in a hidden ``-old-`` folder). The lock is on the folder itself, so it leaves no file
    behind; where the file system has no locks (:func:`lacks_locks`) it is a no-op, and another error of
    the lock is raised (:class:`OSError`), as the runs would no longer take turns."""
    fd: int | None = None
    try:
        fd = lock(parent)
    except OSError as e:
        if not lacks_locks(e):
            raise
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
