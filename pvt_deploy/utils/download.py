"""Checkpoints given as URLs (``--weights https://.../pvt_v2_b0.pth``): downloaded once into the per-user
cache, then read as the local file they became.

The official PVT checkpoints are published as URLs (GitHub release assets, which redirect to
objects.githubusercontent.com). :func:`fetch` keeps each under ``$PVT_DEPLOY_CACHE/weights/<file name>``
(default ``~/.cache/pvt-deploy``, the ONNX Runtime graph cache's root), so a second run reads the file
without the network, as torch hub and Ultralytics do. Beside it ``.<file name>.url`` records the URL it
came from: hubs give every model one name (timm's on the Hugging Face hub are all ``model.safetensors``),
so another URL of a name already taken is kept as ``<sha256 of the URL, 12 digits>.<file name>``. The record
is written before its download lands, so a file without one was put in the cache by hand (an air-gapped
machine): the first URL of its name takes it, as torch hub would. A download is streamed to a temporary file beside
its target and renamed only once it is whole: a short body (fewer bytes than ``Content-Length``), a
dropped connection, 30 s without data, a web page where a checkpoint was expected, a hash that does not
match or a Ctrl-C leaves nothing a later run would load.

Integrity: a file name in torch hub's ``name-<sha256 prefix>.pth`` form (8 or more lower-case hex digits,
at least one of them a letter, so a date such as ``-20210101`` is not taken for one) or a
``#sha256=<hex>`` fragment on the URL is checked against the download. Without a ``Content-Length`` a
download is whole by its own records: a zip archive's end record, the length a safetensors header
gives; a legacy (bare pickle) ``torch.save`` file has none, and is refused unless its hash is given
(:func:`_check_whole`). Nothing else is checked beyond the checks every checkpoint gets (zip CRCs,
``weights_only``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

from pvt_deploy.errors import CheckpointError, InputError
from pvt_deploy.utils import file_size

__all__ = ["TIMEOUT_S", "cache_dir", "fetch", "is_url"]

log = logging.getLogger(__name__)

SCHEMES = ("http://", "https://")
TIMEOUT_S = 30.0  # seconds without a byte (connecting, or between reads) before a download is given up
PROGRESS_AFTER_S = 1.0  # a download that is over sooner draws no bar
_CHUNK = 1 << 20
_HUB_HASH = re.compile(r".+-([0-9a-f]{8,64})\.[^.]+")  # torch hub: resnet18-f37072fd.pth
_FRAGMENT_HASH = re.compile(r"sha256=([0-9a-fA-F]{8,64})")
_HTML = re.compile(rb"\s*(<!doctype\s+html|<html|<head|<!--)", re.IGNORECASE)


def is_url(value: Any) -> TypeGuard[str]:
    """Whether ``value`` (a ``weights`` argument) is an ``http(s)://`` URL rather than a path."""
    return isinstance(value, str) and value[:8].lower().startswith(SCHEMES)


def cache_dir() -> Path:
    """Where downloaded checkpoints are kept: ``$PVT_DEPLOY_CACHE/weights`` (default ``~/.cache/pvt-deploy``)."""
    from pvt_deploy.utils.files import cache_root

    return cache_root() / "weights"


def _parse(url: str) -> tuple[str, str, str | None]:
    """(the URL to request, without its fragment; the cache file's name; the sha256 (prefix) it must have)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError as e:  # a bad port, an unbalanced IPv6 bracket
        raise InputError(f"bad weights URL {_shown(url)}: {e}") from None
    if "@" in parts.netloc:  # urllib took user:password@host for the host's name ("Name or service not known")
        raise InputError(f"weights URL {_shown(url)}: a user name or password in the URL is not supported",
                         hint="download the file and pass its path")
    if not host:
        raise InputError(f"bad weights URL {url}: no host")
    name = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise InputError(f"weights URL {url} names no file (expected https://HOST/.../NAME.pth)")
    request_url = urllib.parse.urlunsplit(parts._replace(fragment=""))
    if parts.query:  # ...?id=1 and ...?id=2 share a path's name, not a file: keep them apart
        name = _own_name(request_url, name)
    expected = None
    if parts.fragment:
        m = _FRAGMENT_HASH.fullmatch(parts.fragment)
        if m is None:  # a short hash (#sha256=00ff) is told how many digits it needs
            raise InputError(f"weights URL {url}: unknown fragment #{parts.fragment} (#sha256= takes 8 to 64 hex "
                             "digits of the file's sha256; no other fragment is understood)")
        expected = m.group(1).lower()
    else:
        hub = _HUB_HASH.fullmatch(name)
        if hub is not None and re.search("[a-f]", hub.group(1)):
            expected = hub.group(1)
    return request_url, name, expected


def _own_name(url: str, name: str) -> str:
    """``name`` as the cache keeps it for ``url`` alone: ``<sha256 of the URL, 12 digits>.<name>``."""
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}.{name}"


def _shown(url: str) -> str:
    """``url`` without a ``user:password@`` (io.sources.redact_url, imported only for such a URL)."""
    if "@" not in url:
        return url
    from pvt_deploy.io.sources import redact_url

    return redact_url(url)


def _record(target: Path) -> Path:
    """Where the URL that ``target`` was downloaded from is recorded: ``.<name>.url`` beside it."""
    return target.with_name(f".{target.name}.url")


def _recorded(target: Path) -> str | None:
    """The URL that ``target`` was downloaded from, or None where none is recorded."""
    record = _record(target)
    return record.read_text(encoding="utf-8").strip() if record.is_file() else None


def _sha256(path: Path) -> str:
    from pvt_deploy.utils.files import sha256_file

    return sha256_file(path)


def fetch(url: str) -> Path:
    """The local file of the checkpoint at ``url``: the cached one, or a fresh download (see the module
    docstring). Raises :class:`InputError` (could not download) or :class:`CheckpointError` (what came
    was not the checkpoint: a web page, another kind of file, a hash that does not match)."""
    request_url, name, expected = _parse(url)
    folder = cache_dir()
    target = folder / name
    try:  # a cache folder that cannot be read or written (a HOME this user cannot enter, a full disk) is
        # said as such, not as the export's or the run's output folder failing
        origin = request_url  # the URL without its fragment
        if _recorded(target) not in (None, origin):  # the name holds another URL's download (hubs give
            # every model one name)
            target = folder / _own_name(origin, name)
        from pvt_deploy.utils.files import atomic_write_text, remove_abandoned_temps

        if target.is_file():  # this URL's, or put there by hand (a download's record lands before it does)
            if expected is None or _sha256(target).startswith(expected):
                if _recorded(target) is None:
                    log.info("%s: using %s, put in the cache by hand", url, target)
                    atomic_write_text(_record(target), origin + "\n")  # no other URL of its name takes it now
                log.debug("%s: using the cached %s", url, target)
                return target
            log.warning("%s: the cached %s does not have sha256 %s; downloading it again", url, target, expected)
        folder.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temps(folder)  # what a killed download left
        atomic_write_text(_record(target), origin + "\n")  # first: a file without a record was not downloaded
        log.info("downloading %s to %s", url, target)
        try:
            _download(request_url, url, target, expected)  # network errors are InputErrors: OSErrors here are the cache's
        except BaseException:
            if not target.is_file():  # nothing landed (a 404, a web page, Ctrl-C): the name is not this URL's
                with contextlib.suppress(OSError):
                    _record(target).unlink()
            raise
    except OSError as e:
        raise InputError(f"cannot use the weights cache {folder}: {e.strerror or e}",
                         hint="set PVT_DEPLOY_CACHE to a folder this user can write, with room") from None
    return target


def _open(request_url: str, url: str) -> Any:
    from pvt_deploy import __version__

    request = urllib.request.Request(request_url, headers={"User-Agent": f"pvt-deploy/{__version__}"})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # follows redirects (GitHub's to its CDN)
    except urllib.error.HTTPError as e:
        e.close()
        raise InputError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise InputError(f"could not download {url} ({_why(e.reason)})") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise InputError(f"could not download {url} ({_why(e)})") from None


def _why(reason: Any) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer for {TIMEOUT_S:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    text = str(reason).strip().splitlines()
    return text[0][:200] if text else type(reason).__name__


def _apart(got: int, of: int) -> tuple[str, str]:
    """Two byte counts of one message as :func:`~pvt_deploy.utils.file_size` says them, or both in bytes where it
    says them alike: a download a few bytes short was 'closed after 14.3 MB of 14.3 MB'."""
    said = file_size(got), file_size(of)
    return said if said[0] != said[1] else (f"{got:,} B", f"{of:,} B")


def _download(request_url: str, url: str, target: Path, expected: str | None) -> None:
    from pvt_deploy.utils.files import atomic_open

    with contextlib.closing(_open(request_url, url)) as response:
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.strip().isdigit() else None
        kind = response.headers.get_content_type()
        got = 0
        digest = hashlib.sha256()

        def read() -> bytes:
            try:
                data: bytes = response.read(_CHUNK)
                return data
            except TimeoutError:
                raise InputError(f"could not download {url}: no data for {TIMEOUT_S:g} s after "
                                 f"{file_size(got)}") from None
            except (OSError, http.client.HTTPException) as e:  # a reset, a broken chunked body
                raise InputError(f"could not download {url}: the connection dropped after {file_size(got)} "
                                 f"({_why(e)})") from None

        first = read()
        from pvt_deploy.models.checkpoints import is_checkpoint_head

        if not is_checkpoint_head(first):  # torch.save's zip or pickle, or safetensors
            if kind == "text/html" or _HTML.match(first[:512]):  # Google Drive's "can't scan for viruses" page
                raise CheckpointError(f"{url}: this URL gave a web page, not a checkpoint",
                                      hint="download it in a browser and pass the file")
            raise CheckpointError(f"{url}: the download is not a PyTorch checkpoint (it is {kind}"
                                  f"{', empty' if not first else ''})")
        with atomic_open(target, "wb") as f, _progress(target.name, total) as advance:
            chunk = first
            while chunk:
                f.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                advance(len(chunk))
                chunk = read()
            if total is not None and got != total:
                said, whole = _apart(got, total)
                raise InputError(f"could not download {url}: the connection closed after {said} of {whole}")
            if expected is not None and not digest.hexdigest().startswith(expected):
                raise CheckpointError(f"{url}: the download's sha256 is {digest.hexdigest()[:len(expected)]}..., "
                                      f"not the {expected} its {'fragment' if '#' in url else 'name'} "
                                      "gives; refusing it", hint="the file changed or was damaged on the way")
            f.flush()
            _check_whole(url, Path(f.name), first, confirmed=total is not None or expected is not None)


def _check_whole(url: str, path: Path, first: bytes, *, confirmed: bool) -> None:
    """Refuse a download that its own records say is cut short, before it is cached: a zip archive (a
    ``torch.save`` file) by its end record, a safetensors file by the length its header gives. A legacy
    (bare pickle) ``torch.save`` file records no length: with none from the server (``Content-Length``)
    and no hash to match (``confirmed`` false) a cut one could not be told from a whole one, and a
    cached file is loaded for good, so it is refused."""
    from pvt_deploy.models.checkpoints import is_safetensors, safetensors_length

    if first.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{url}: the download is cut short (its zip archive has no end)")
    elif is_safetensors(first):
        want, got = safetensors_length(path), path.stat().st_size
        if want is None or want > got:
            said, whole = _apart(got, want or 0)
            raise CheckpointError(f"{url}: the download is cut short (" + (
                "its safetensors header is incomplete)" if want is None
                else f"{said} of the {whole} its safetensors header gives)"))
        if want < got:
            raise CheckpointError(f"{url}: the download is not a safetensors file ({file_size(got - want)} after the "
                                  "data its header gives)")
    elif not confirmed:
        raise CheckpointError(f"{url}: the server gave no length and a legacy (non-zip) torch checkpoint records "
                              "none, so a download cut short could not be told from a whole one; not caching it",
                              hint="add #sha256=<its sha256> to the URL, or download the file and pass its path")


@contextlib.contextmanager
def _progress(name: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """``advance(bytes)`` for a transient Rich bar on stderr, drawn once a download has taken
    :data:`PROGRESS_AFTER_S` (a fast one draws nothing), and only where stderr is a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    start = time.monotonic()
    state: dict[str, Any] = {"done": 0, "bar": None, "task": None}

    def advance(n: int) -> None:
        state["done"] += n
        if state["bar"] is None:
            if time.monotonic() - start < PROGRESS_AFTER_S:
                return
            bar = state["bar"] = Progress(TextColumn("download {task.description}"), BarColumn(), DownloadColumn(),
                                          TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                                          transient=True)
            bar.start()
            state["task"] = bar.add_task(name, total=total)
        state["bar"].update(state["task"], completed=state["done"])

    try:
        yield advance
    finally:
        if state["bar"] is not None:
            state["bar"].stop()
