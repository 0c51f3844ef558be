"""Atomic writes, file hashing, and checking that a folder takes new files.

A crash or Ctrl-C during a write must never leave a half-written artifact that later loads, so every
artifact is written to a temporary file in the same folder and renamed over the target.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pvt_deploy.errors import InputError

log = logging.getLogger(__name__)

# Read once at import: os.umask can only be read by setting it, which is not thread-safe later on.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def cache_root() -> Path:
    """pvt-deploy's per-user cache folder (downloaded checkpoints in ``weights/``, graphs ONNX Runtime
    cannot keep beside a read-only model in ``ort/``): ``$PVT_DEPLOY_CACHE`` (``~`` expanded), else
    ``~/.cache/pvt-deploy``. An empty value is unset, as for most such variables (``PVT_DEPLOY_CACHE=``
    is no folder: it made ``./ort`` of the current one). Read at each call, so a variable set after
    pvt_deploy was imported (a test, a server's start-up code) is the one used."""
    value = os.environ.get("PVT_DEPLOY_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "pvt-deploy"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, next_name: Callable[[], Path] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed onto ``target``.

    For writers that want a path (onnx.save, cv2.imwrite, PyAV). On any exception the temporary
    file is removed and ``target`` is left as it was. The temporary file, ``.<name>.XXXXXXXX.part<suffix>``,
    is locked (:func:`flock`) until it is renamed or removed, which tells one being written from one a
    killed writer left (:func:`remove_abandoned_temps`); the lock is taken a moment after the file is
    made, so for :data:`TEMP_GRACE_S` after its last change a temporary file counts as being written
    whatever its lock. Where the file system has no locks (:func:`lacks_locks`) it is written unlocked;
    another error of the lock is raised, as a write's is.

    ``next_name``: the file is a new one and replaces none. It is put in place by :func:`rename_new`, and
    where ``target`` is taken by then (another process wrote it meanwhile) under ``next_name()`` instead,
    asked again while that one is taken too: the caller learns the name from what it gave last. A ``next_name()``
    that gives the name just found taken (a namer of fixed names) raises that :class:`FileExistsError`.
    """
    target = Path(target)
    if target.is_symlink():  # write through the link, as open() does, instead of replacing it with a file
        target = target.resolve()
    if target.exists() and not target.is_file():  # a device (/dev/null), a FIFO, a folder: never renamed over
        raise OSError(errno.EISDIR if target.is_dir() else errno.EEXIST, "exists and is not a regular file",
                      str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".part" + target.suffix, dir=target.parent)
    tmp_path = Path(tmp)
    try:
        try:
            flock(fd, wait=False)  # held until the file is renamed or removed: see remove_abandoned_temps
        except OSError as e:
            if not lacks_locks(e):  # not for want of locks: unlocked, another run would sweep it mid-write
                raise
            # no locks on this file system: the temporary file is simply never swept
        # mkstemp creates 0600; give the artifact the permissions a plain open() would (0666 & ~umask),
        # so outputs written in a container are readable by the host user.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        yield tmp_path
        if next_name is None:
            os.replace(tmp_path, target)
        else:
            while True:
                try:
                    rename_new(tmp_path, target)
                    break
                except FileExistsError:
                    taken, target = target, next_name()
                    if target == taken:  # asked again, it would give that name for ever
                        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    finally:
        os.close(fd)


#: renameat2's flag and the working folder's descriptor (Linux's <linux/fs.h>, <fcntl.h>)
_RENAME_NOREPLACE, _AT_FDCWD = 1, -100
#: The errors by which renameat2 says the kernel or the file system has no RENAME_NOREPLACE (NFS, some FUSE
#: mounts: EINVAL), and by which link says the file system has no hard links (FAT, exFAT: EPERM), as opposed to
#: a failure of this one call
_NO_NOREPLACE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
_NO_LINKS = frozenset({errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


@functools.cache
def _renameat2() -> Any:
    """The C library's ``renameat2`` (glibc 2.28 and later, musl 1.2.5), None where it has none or is no Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def rename_new(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` to ``dst`` where nothing has that name, in one step: :class:`FileExistsError` where something
    does, whoever put it there and however late, and ``src`` left as it is. Linux's ``renameat2`` with
    ``RENAME_NOREPLACE`` (ext4, XFS, Btrfs, tmpfs, FAT, exFAT); where the C library, the kernel or the file system
    has none (glibc before 2.28, NFS, macOS, Windows), a hard link (which never replaces either), then ``src``
    dropped; where neither is to be had (a FAT under an old glibc), ``dst`` looked at, then renamed onto: Windows'
    rename replaces nothing, elsewhere that is a moment's race with another writer."""
    call = _renameat2()
    if call is not None:
        import ctypes

        if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in _NO_NOREPLACE:  # EEXIST: FileExistsError, as OSError makes it
            raise OSError(code, os.strerror(code), os.fspath(src), None, os.fspath(dst))
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in _NO_LINKS:  # FileExistsError among them
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst)) from None
        os.rename(src, dst)
        return
    with contextlib.suppress(OSError):  # the file is in place: a name left beside it goes as a killed write's
        os.unlink(src)


_TEMP_NAME = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.part(\.[^.]*)?")  # what atomic_path names its temporary files

#: Seconds after its last change for which a temporary file of :func:`atomic_path` counts as being
#: written even with its lock free: ``mkstemp`` makes it a moment before its writer takes the lock, and a
#: sweep in between would delete a live file. Longer than a file system's mtime step (FAT's 2 s).
TEMP_GRACE_S = 5.0


#: The errors by which flock() says the platform or the file system has no such locks (NFS without its lock
#: service: ENOLCK; Windows: :func:`flock`'s ENOTSUP), as opposed to a failure of this one call.
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


def lacks_locks(error: OSError) -> bool:
    """Whether ``error`` (of :func:`flock` or :func:`lock`) says that there are no locks to be had here, which
    a caller may go on without, rather than that this one failed (a path gone, a descriptor closed)."""
    return error.errno in _NO_LOCKS


def _fcntl() -> Any:
    """The ``fcntl`` module; :class:`OSError` ENOTSUP (:func:`lacks_locks`) where the platform has none."""
    try:
        import fcntl
    except ImportError as e:  # Windows
        raise OSError(errno.ENOTSUP, "no flock here") from e
    return fcntl


def flock(fd: int, *, wait: bool = True) -> bool:
    """Take an exclusive ``flock`` on ``fd`` (a file's or a folder's), which the kernel drops when the
    descriptor is closed or the process dies, however it dies: False where ``wait`` is false and another
    process holds it. :class:`OSError` where the platform or the file system has no such locks."""
    fcntl = _fcntl()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def lock(path: str | os.PathLike[str], *, wait: bool = True) -> int | None:
    """A descriptor of ``path`` (a file or a folder) that holds an exclusive :func:`flock` on it until it
    is closed, or None where ``wait`` is false and another process holds it. :class:`OSError` where
    ``path`` cannot be opened or has no such locks (where the platform has none, before opening it: Windows
    opens no folder, and its EACCES is no 'no locks' error). A folder this user may write to but not read
    (mode 0300, 0733) opens for none of its runs: no locks to be had there either (ENOTSUP, :func:`lacks_locks`)."""
    _fcntl()
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError as e:
        if not os.path.isdir(path):
            raise
        raise OSError(errno.ENOTSUP, f"cannot open the folder to lock it ({e.strerror})", os.fspath(path)) from e
    try:
        if flock(fd, wait=wait):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def unheld(path: str | os.PathLike[str]) -> bool | None:
    """Whether no process holds a :func:`flock` on ``path`` (a file's or a folder's): True for what a
    killed writer left (the kernel dropped its lock when it died, however it died), False while its
    writer runs, None where that cannot be told (no locks here, or ``path`` gone meanwhile)."""
    try:
        fd = lock(path, wait=False)
    except OSError:
        return None
    if fd is None:
        return False
    os.close(fd)
    return True


@contextlib.contextmanager
def abandoned_folder(folder: str | os.PathLike[str]) -> Iterator[bool]:
    """Whether ``folder`` is an empty-handed leftover of a run that was killed, its lock held meanwhile. A
    run holds a :func:`lock` on each folder it makes for its own files until it ends (``infer``'s
    ``labels_N/`` and ``crops_N/``), so one whose lock is free and that has not changed for
    :data:`TEMP_GRACE_S` (a run that made it a moment ago may not have its lock yet) was left by a run
    that is gone. Inside, no other process can take that lock: what is inside may be swept and the folder
    removed without a run starting beside this one losing it. False where locks are not to be had and
    where the folder is another's or gone."""
    try:
        fd = lock(folder, wait=False)
    except OSError:
        fd = None
    if fd is None:
        yield False
        return
    try:
        held = os.fstat(fd)
        try:
            now = os.lstat(folder)
        except OSError:
            now = None
        yield (now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev)
               and time.time() - held.st_mtime >= TEMP_GRACE_S)
    finally:
        os.close(fd)


def remove_abandoned_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` writes left in ``folder`` when their process
    was killed (``kill -9``, the OOM killer, a crash in native code) and return them. A writer holds a
    lock on its temporary file until it is renamed, so one whose lock is free (:func:`unheld`) is
    abandoned; one being written is left alone, and so is any where locks are not to be had, and any
    changed in the last :data:`TEMP_GRACE_S` (made by a writer that has not taken its lock yet). (Nothing else
    ever removes them: a cached CPU graph killed while written left up to 260 MB in ``.ort-cache``, a killed
    ``infer`` the hidden start of its video in the output folder.)"""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith(".") and _is_temp(name) and _abandoned(path):
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(Path(path))
                log.info("removed %s, left by a process that was killed while writing it", name)
    return removed


def _is_temp(name: str) -> bool:
    """Whether ``name`` is one that :func:`atomic_path` gives its temporary files: ``.<name>.XXXXXXXX.part``
    and the name's own suffix (a ``.backup.20240101.part.tar`` is not one), or cut to 255 bytes
    (:func:`_temp_prefix`: the suffix may then be cut off the name)."""
    m = _TEMP_NAME.fullmatch(name)
    return m is not None and (m[1].endswith(m[2] or "") or len(os.fsencode(name)) > 255 - 4)


def _abandoned(path: str | os.PathLike[str]) -> bool:
    """Whether the temporary file ``path`` of :func:`atomic_path` was left by a writer that is gone: a
    file unchanged for :data:`TEMP_GRACE_S` whose lock is free. False while it may be written, where that
    cannot be told (no locks here), and once it is gone (renamed onto its target meanwhile)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime >= TEMP_GRACE_S and unheld(path) is True


def _temp_prefix(target: Path, limit: int = 255) -> str:
    """``.<name>.`` for the temporary file beside ``target``, the name cut (at a character boundary)
    so that the whole temporary name still fits the file system's 255-byte limit: a legal name of
    ~240 bytes (80 CJK characters) made the temporary one too long and failed the run."""
    room = limit - len(b".part") - len(os.fsencode(target.suffix)) - 8 - 2  # mkstemp adds 8
    name = target.name
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}."


def make_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """``mkdir -p folder``, returning the folders this call made, outermost first (none when it
    existed), for :func:`remove_made_folders`. Each level is made on its own, so a folder another
    process made meanwhile is not counted as made here. Raises as :meth:`Path.mkdir` does."""
    folder = Path(folder)
    missing = []
    level = folder
    while not level.exists() and level.parent != level:
        missing.append(level)
        level = level.parent
    made = []
    for level in reversed(missing):
        try:
            level.mkdir()
        except FileExistsError:
            if not level.is_dir():
                raise
        else:
            made.append(level)
    return made


def remove_made_folders(made: Iterable[str | os.PathLike[str]]) -> None:
    """Remove the folders of :func:`make_folders` (outermost first, as it lists them) that are still
    empty, innermost first; one that holds anything (a file, another run's folder) stays, and so do
    the folders around it."""
    for folder in reversed(list(made)):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError:
            return


def link_to_nowhere(path: str | os.PathLike[str]) -> OSError | None:
    """The first link on ``path`` (from its end: the folders that are not there, up to one that is) that leads
    nowhere (a loop of links, a link to what is gone), as the :class:`OSError` that says so ('X is a link that
    leads nowhere (Too many levels of symbolic links)', ``filename`` the link); None where there is none. It
    writes nothing: a path may be checked for such a link where nothing is to be made."""
    return _dead_link(_missing_levels(path)[0])


def _missing_levels(path: str | os.PathLike[str]) -> tuple[list[Path], Path]:
    """(the levels of ``path`` that are not there, from its end; the nearest one that is). os.path's test, not
    Path.exists, which raises where a name is longer than the file system takes (os.path's says False)."""
    existing = Path(path)
    missing: list[Path] = []
    while not os.path.exists(existing) and existing.parent != existing:
        missing.append(existing)
        existing = existing.parent
    return missing, existing


def _dead_link(levels: list[Path]) -> OSError | None:
    """The first of ``levels`` (missing ones: :func:`_missing_levels`) that is a link leading nowhere, said."""
    for level in levels:
        if os.path.islink(level):
            try:
                os.stat(level)
            except OSError as e:
                return OSError(e.errno, f"{level} is a link that leads nowhere ({e.strerror})", str(level))
    return None


def probe_writable(folder: str | os.PathLike[str]) -> Path:
    """Check, creating nothing that stays, that files can be made under ``folder`` (which need not exist
    yet) and return its nearest existing ancestor. Raises :class:`NotADirectoryError` when that
    ancestor is a file, or the :class:`OSError` of a probe file it refuses (read-only file system,
    permissions), each with ``filename`` the ancestor. A link on the way that leads nowhere (a loop of links,
    a link to what is gone) cannot be made a folder: its own error (ELOOP, ENOENT) naming it, not the 'File
    exists' that making the folder there said. A folder to be made whose name is longer than the file system
    takes (``ENAMETOOLONG``, 255 bytes on most) is refused too, with its path as ``filename``: the system says so
    only once the folders before it are there, so a run that made them would find out at its first write."""
    missing, existing = _missing_levels(folder)
    nowhere = _dead_link(missing)
    if nowhere is not None:
        raise nowhere
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(existing))
    if missing:
        try:
            name_max = os.pathconf(existing, "PC_NAME_MAX")
        except (AttributeError, OSError, ValueError):  # no limit told (Windows has no pathconf): the usual one
            name_max = 255
        for path in reversed(missing):
            if len(os.fsencode(path.name)) > name_max:
                raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=".pvt-deploy-probe.", dir=existing)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(existing)) from e
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return existing


def unwritable_reason(folder: str | os.PathLike[str]) -> str | None:
    """Why files cannot be made under ``folder`` (:func:`probe_writable`), worded to end a one-line
    error: ``"<ancestor> is a file, not a folder"`` or the system's reason (``"Read-only file
    system"``); None when they can. The one wording of every "cannot write to FOLDER: why" error."""
    try:
        probe_writable(folder)
    except NotADirectoryError as e:
        return f"{e.filename} is a file, not a folder"
    except OSError as e:
        return e.strerror or str(e)
    return None


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "wb", *, sync: bool = True,
                next_name: Callable[[], Path] | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; renamed onto ``target`` when the block exits cleanly.

    ``sync``: fsync before the rename (against power cuts; off for the annotated images of a run, where
    an fsync per frame would dominate on the SD cards of edge boxes). Either way a write or the close
    that the file system refuses (a full disk) raises and leaves ``target`` as it was. Text is UTF-8,
    whatever the locale, so an artifact reads back the same on another machine. ``next_name``: a new file,
    replacing none (:func:`atomic_path`)."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(target, next_name=next_name) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()
        if sync:
            os.fsync(f.fileno())


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes | bytearray | memoryview, *,
                       sync: bool = True, next_name: Callable[[], Path] | None = None) -> None:
    """``data`` (an encoded image's numpy buffer too: ``memoryview(array)``) as ``target``, atomically.

    Not ``ndarray.tofile``: it ignores an error of the final flush, so a full disk there left a
    truncated file under the final name with no error (an annotated JPEG cut at the file size limit)."""
    with atomic_open(target, "wb", sync=sync, next_name=next_name) as f:
        f.write(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_open(target, "w") as f:
        f.write(text)


def _as_json_value(obj: Any) -> Any:
    """The one rule for a value that JSON has no type for: numpy (torch) scalars and arrays as Python
    numbers and lists, paths as their text; anything else as it is."""
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _json_default(obj: Any) -> Any:
    """``json.dumps``'s ``default``: :func:`_as_json_value`, or the ``TypeError`` it expects."""
    value = _as_json_value(obj)
    if value is obj:
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    return value


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy scalars and arrays as Python numbers and lists, paths as
    text (:func:`_as_json_value`), and the floats JSON has no literal for (infinities, NaN) as the
    strings ``"inf"``, ``"-inf"``, ``"nan"``, which ``float()`` reads back. An infinite ``max_rel`` (an
    output whose reference is all zeros) or a ``--tolerance inf`` limit keeps its meaning, where
    ``null`` would read as "not measured"."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    value = _as_json_value(obj)
    return obj if value is obj else json_safe(value)


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes strict JSON (RFC 8259) only, for every JSON text pvt-deploy writes,
    with numpy values and paths as :func:`json_safe` writes them (a ``default`` given overrides that).

    ``json.dumps`` writes an infinity or a NaN as ``Infinity`` / ``NaN``, which are not JSON: jq,
    JavaScript's ``JSON.parse`` and strict readers refuse the whole file. Such values are written as
    :func:`json_safe` says (``"inf"``, ``"-inf"``, ``"nan"``); ``allow_nan=False`` proves that nothing
    else slips through. The walk is only paid by a value that holds one."""
    kwargs.setdefault("default", _json_default)
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:  # "Out of range float values are not JSON compliant"
        return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(target, json_dumps(obj, indent=2, sort_keys=False) + "\n")


#: The digests :func:`sha256_file` took inside :func:`hashing_once`, by the file's identity; None outside.
_HASHED: contextvars.ContextVar[dict[tuple[int, ...], str] | None] = contextvars.ContextVar("pvt_deploy_hashed",
                                                                                            default=None)


@contextlib.contextmanager
def hashing_once() -> Iterator[None]:
    """Inside this block (one model load), :func:`sha256_file` reads a file once: a second hash of it
    (the manifest check, then a cache key made of its content) is the first one's digest. A file is
    known by its device, inode, size, mtime and ctime, so one replaced or written to meanwhile is read
    again. Usable as a decorator; a nested block shares the outer one's digests. Outside any block
    every call reads the file, as a check of a file that may have changed since must."""
    if _HASHED.get() is not None:
        yield
        return
    token = _HASHED.set({})
    try:
        yield
    finally:
        _HASHED.reset(token)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    memo = _HASHED.get()
    with open(path, "rb") as f:
        if memo is not None:
            st = os.fstat(f.fileno())
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if key in memo:
                return memo[key]
        h = hashlib.sha256()
        try:
            while block := f.read(chunk):
                h.update(block)
        except OSError as e:  # a file object's read names no file (EIO from a failing disk): say which
            if e.filename is None:
                e.filename = os.fspath(path)
            raise
    digest = h.hexdigest()
    if memo is not None:
        memo[key] = digest
    return digest


#: The byte-order marks a UTF-16 text file starts with: little-endian (as Windows writes it) and big-endian.
UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")
#: And a UTF-32 one's: the little-endian mark begins with UTF-16's, so it is looked for first.
UTF32_MARKS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")


def wide_codec(head: bytes) -> str | None:
    """The codec of text whose bytes begin ``head`` where its byte-order mark says it is UTF-32 or UTF-16 (Python's
    ``utf-32``/``utf-16`` read the mark's byte order and drop it); None where it has neither mark."""
    return "utf-32" if head.startswith(UTF32_MARKS) else "utf-16" if head.startswith(UTF16_MARKS) else None


def decode_text(data: bytes, *, errors: str = "strict") -> str:
    """The text of a text file's bytes ``data``, read as a user's file may be saved: UTF-8, with its byte-order mark
    (Windows Notepad's, dropped) or none, or UTF-16 with its mark first, little- or big-endian (Windows PowerShell
    5's ``>`` and ``Out-File``). ``errors="surrogateescape"`` reads UTF-8 bytes that are not UTF-8 as the file
    system gives a name that is not (``os.fsdecode``). UTF-32, its mark first, is read too (:func:`wide_codec`),
    which no tool writes unasked. Bytes that are none of them are a :class:`ValueError` saying so in one line, at
    the byte counted in the file, mark and all: ``neither UTF-8 nor UTF-16 text: invalid start byte at byte 3``;
    where a UTF-16 or UTF-32 mark says which the file is, that one: ``not valid UTF-32 text: truncated data at
    byte 12``."""
    wide = wide_codec(data)
    try:
        return data.decode(wide) if wide else data.decode("utf-8-sig", errors)  # utf-16 and utf-32 read their mark
    except UnicodeDecodeError as e:  # utf-8-sig counts from after its mark; utf-16 and utf-32 from the file's start
        at = e.start + (3 if not wide and data.startswith(b"\xef\xbb\xbf") else 0)
        what = f"not valid {wide.upper()} text" if wide else "neither UTF-8 nor UTF-16 text"
        raise ValueError(f"{what}: {e.reason} at byte {at}") from None


def read_text(path: str | os.PathLike[str], *, what: str = "") -> str:
    """The text of the text file ``path`` as :func:`decode_text` reads its bytes. A file that cannot be read (no
    permission, a failing disk) or decoded is an :class:`~pvt_deploy.errors.InputError` in one line naming the
    file as the user gave it, ``what`` (``label``, ``--names``) first where given: ``label a.txt: cannot read it
    (neither UTF-8 nor UTF-16 text: invalid start byte at byte 3)``."""
    try:
        return decode_text(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise InputError(f"{f'{what} ' if what else ''}{path}: cannot read it ({why})") from None


#: A write the file system refused for want of room: a full disk, a quota, a file size limit.
FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: A network file system (NFS, SMB, sshfs and other FUSE mounts) gone or out of reach under a file: its server
#: restarted (ESTALE), the mount's process ended (ENOTCONN), the server stopped answering (ETIMEDOUT, EREMOTEIO).
NETWORK_FS_ERRNOS = frozenset(getattr(errno, name) for name in ("ESTALE", "ENOTCONN", "ETIMEDOUT", "EREMOTEIO")
                              if hasattr(errno, name))
#: A write the folder refused: no room, a read-only file system, no permission, a name too long, a disk or a
#: network file system failing: the user's machine, said in one line, not a bug of this program's.
WRITE_ERRNOS = FULL_DISK_ERRNOS | NETWORK_FS_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG,
                                                      errno.EIO}


class OutputError(OSError):
    """A write to the command's own output (its stdout or stderr: ``--json > FILE`` on a full disk or a failing
    one) that the system refused, as the :class:`OSError` it raised (:func:`command_streams`)."""


def said(error: OSError) -> str:
    """An :class:`OSError` in one line: what the system said, after the file or files it names
    (``exports/x/model.onnx: Stale file handle``; ``a -> b: ...`` for a rename)."""
    why = error.strerror or str(error) or type(error).__name__
    names = [os.fsdecode(n) if isinstance(n, (str, bytes)) else str(n)
             for n in (error.filename, error.filename2) if n is not None]
    return f"{' -> '.join(names)}: {why}" if names else why


def printable_streams() -> None:
    """Let stdout and stderr print any text where the locale cannot encode it (``LANG=en_US.ISO-8859-1``,
    ``PYTHONUTF8=0`` with ``LC_ALL=C``): a character the terminal's codec lacks is written as its
    ``\\u`` escape instead of ending the command with a ``UnicodeEncodeError`` (the tables' dashes and
    arrows did, for every command that printed one). UTF-8 streams are left as they are."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        if isinstance(stream, io.TextIOWrapper) and encoding != "utf8":
            with contextlib.suppress(ValueError):  # closed, or already written to in a way that forbids it
                stream.reconfigure(errors="backslashreplace")


class _ReaderGone(io.FileIO):
    """A descriptor whose reader may leave (``pvt-deploy models | head -1``): from the first write that
    meets a closed pipe on, what is written is dropped, and the descriptor the process had for the stream
    is pointed at ``/dev/null``, so other writers to it (Python's own stream, native code) go quiet too.
    Every other failure (a full disk, a failing one) raises, as an :class:`OutputError`: the error of the
    command's output, whatever wrote to it."""

    def __init__(self, fd: int, stream_fd: int) -> None:
        super().__init__(fd, "w")
        self.stream_fd = stream_fd
        self.gone = False

    def write(self, data: Any) -> int:
        if not self.gone:
            try:
                written = super().write(data)
                while written is None:  # a descriptor in non-blocking mode whose reader is behind (see _wait_for_room)
                    _wait_for_room(self.fileno())
                    written = super().write(data)
                if written == 0 and len(memoryview(data)):
                    # a descriptor that takes nothing and says no error (the /proc/PID/mem of a process that
                    # has gone, given by a shell's '> /proc/self/mem'): Python's buffer would retry it forever
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                return written
            except BrokenPipeError:
                self.gone = True
                with contextlib.suppress(OSError):
                    null = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(null, self.stream_fd)
                    os.close(null)
            except OSError as e:
                raise OutputError(e.errno, e.strerror) from e
        return len(memoryview(data))


def _wait_for_room(fd: int) -> None:
    """Wait until ``fd`` takes a write, as a write to a blocking descriptor waits. A descriptor in non-blocking mode
    (O_NONBLOCK: set by a parent on the pipe it gave, or left on a terminal by a program before, and shared by every
    process writing there) answers a full pipe with EAGAIN, on which Python's buffered writer gave up: 'pvt-deploy
    models --json' to a reader that was behind wrote its first 4096 bytes and ended 'write could not complete
    without blocking', exit 2. A reader that has gone wakes the wait too (the write then meets a closed pipe)."""
    import select

    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.poll()
    else:  # Windows: no poll (nor non-blocking pipes FileIO writes to)
        select.select([], [fd], [])


@contextlib.contextmanager
def command_streams() -> Iterator[None]:
    """Inside, ``sys.stdout`` and ``sys.stderr`` write all they are given or raise, and a reader that
    goes away costs only what it would have read.

    * Unbuffered (``PYTHONUNBUFFERED=1`` or ``-u``, which the Docker images set), Python's text layer
      writes straight to the file and drops whatever a short write leaves (CPython does not retry), so
      ``pvt-deploy info --json > report.json`` on a full disk kept the first 1024 bytes and exited 0.
      Here a line-buffered writer on a copy of the descriptor takes each stream's place (lines still go
      out as they are printed), which writes the rest or raises the ``OSError``.
    * A pipe whose reader has closed it (``| head -1``) made the first write raise ``BrokenPipeError``
      wherever it came: Click's answer is exit 1, which README keeps for the tool's own failures, and
      ``infer … 2>&1 | head -1`` ended before writing a single output. The rest of that stream's text
      is dropped instead (:class:`_ReaderGone`); the command does its work and exits with its own code.
    """
    saved = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        raw = getattr(getattr(stream, "buffer", None), "raw", getattr(stream, "buffer", None))
        if not isinstance(stream, io.TextIOWrapper) or not isinstance(raw, io.FileIO):
            continue  # not a file (a test's capture)
        try:
            stream.flush()
            fd = os.dup(raw.fileno())
        except (OSError, ValueError):  # closed: left as it is
            continue
        saved.append((name, stream))
        setattr(sys, name, io.TextIOWrapper(io.BufferedWriter(_ReaderGone(fd, raw.fileno())), encoding=stream.encoding,
                                            errors=stream.errors, line_buffering=True))
    try:
        yield
    finally:
        for name, stream in saved:
            replaced = getattr(sys, name)
            setattr(sys, name, stream)
            with contextlib.suppress(OSError, ValueError):  # a failed flush raised where it was printed
                replaced.close()
