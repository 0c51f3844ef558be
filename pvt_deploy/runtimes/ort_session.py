"""The CPU-optimised copy of an ONNX graph that ONNX Runtime sessions load, built once and cached.

``model.onnx`` is the portable graph (TensorRT parses it). On ONNX Runtime's CPU provider a few
exact rewrites make it faster (:mod:`pvt_deploy.export.optimize`: wide 3x3 head convolutions as
Winograd F(4x4, 3x3), spatial-reduction attention as one ``MultiHeadAttention`` node, PVT v2's token
MLP as 1x1 convolutions; INT8 weights re-based, exactly, on CPUs with AMX so that its kernels run
them and on x86 CPUs without VNNI so that no product saturates).
They use ``com.microsoft`` ops or tune the graph to one CPU, so they are applied to a *copy* that
only ONNX Runtime reads. Building the copy takes 0.1-2 s (1.3-1.7 s for the pvt_small detector), hashing
the source a fraction of one, so sessions build it on first load and reuse it:

* the copy lives in ``.ort-cache/`` beside the source (or in ``~/.cache/pvt-deploy/ort`` when that
  folder is read-only), named by the source's sha256, the rewrites and their recipe number, and the
  pvt-deploy and onnxruntime versions — a re-exported ``model.onnx`` or an upgrade gets a fresh copy, never a stale one;
* it is written atomically, so two processes starting together at worst both build it;
* building a new copy deletes the copies earlier recipes or versions built for the same source
  (a detector's is ~260 MB), so upgrades do not pile them up;
* a graph where no rewrite applies (an INT8 Q/DQ graph on a VNNI CPU without AMX, an unfamiliar export)
  is recorded as such and the source is loaded as is;
* any failure falls back to the source graph with a warning: an optimisation never stops inference;
  a cached copy that no longer loads (a full disk, a hand edit) is rebuilt once by the backend.

ONNX Runtime's own level-ALL optimisations (fusions, NCHWc layouts) still run at session creation;
they are hardware-specific (AVX2 vs AVX-512 blocking), which is why the cached copy is stored before
them rather than as ORT's ``optimized_model_filepath`` output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvt_deploy.utils import joined_lines

__all__ = ["OptimizedGraph", "built_graph", "cache_dir_for", "default_rewrites", "discard", "optimized_graph"]

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".ort-cache"
# a cache entry: <source stem>.<key>.json, the record, and <source stem>.<key>.onnx, the graph (_key)
_ENTRY = re.compile(r"(.+)\.[0-9a-f]{20}\.(json|onnx)")


@dataclass
class OptimizedGraph:
    """What a session should load: ``path`` (the optimised copy, or the source when nothing applied)."""

    path: Path
    source: Path
    rewrites: dict[str, int] = field(default_factory=dict)
    cached: bool = False  # True when an earlier session had built it
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.path != self.source

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "rewrites": dict(self.rewrites), "cached": self.cached,
                **({"error": self.error} if self.error else {})}


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def cache_dir_for(source: Path) -> Path:
    """``.ort-cache`` beside ``source`` when writable, else the per-user cache's ``ort/``."""
    local = source.parent / CACHE_DIRNAME
    return local if _writable(local) else _user_cache()


def _key(source: Path, rewrites: Sequence[str], sha256: str | None = None) -> str:
    """The cache key of ``source`` (whose sha256, when the caller has it, is ``sha256``) with ``rewrites``."""
    from importlib import metadata

    import onnxruntime

    try:
        version = metadata.version("pvt-deploy")
    except metadata.PackageNotFoundError:
        version = "0"
    from pvt_deploy.export.optimize import RECIPE
    from pvt_deploy.utils.files import sha256_file

    text = json.dumps([sha256 or sha256_file(source), sorted(rewrites), RECIPE, version, onnxruntime.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def optimized_graph(source: str | os.PathLike[str], *, rewrites: Sequence[str] | None = None,
                    cache_dir: str | os.PathLike[str] | None = None) -> OptimizedGraph:
    """The graph an ONNX Runtime CPU session should load for ``source`` (see the module docstring).

    ``rewrites``: names from :data:`pvt_deploy.export.optimize.REWRITES` (default:
    :func:`default_rewrites`, the ones that pay on this CPU).
    """
    src = Path(source)
    names = list(default_rewrites() if rewrites is None else rewrites)
    if not names:
        return OptimizedGraph(src, src)
    try:
        folder = Path(cache_dir) if cache_dir is not None else cache_dir_for(src)
        key = _key(src, names)
        target = folder / f"{src.stem}.{key}.onnx"
        record = folder / f"{src.stem}.{key}.json"
        return _cached(src, target, record) or _build(src, names, target, record)
    except Exception as e:  # noqa: BLE001 - never let an optimisation stop inference
        text = f"{type(e).__name__}: {joined_lines(e)[:200]}"
        log.warning("%s: CPU graph rewrites skipped (%s); loading the graph as exported", src.name, text)
        return OptimizedGraph(src, src, error=text)


def _cached(src: Path, target: Path, record: Path) -> OptimizedGraph | None:
    """The entry an earlier session built (``record`` says whether anything changed), or None."""
    if not record.is_file():
        return None
    info = json.loads(record.read_text(encoding="utf-8"))
    counts = {k: int(v) for k, v in (info.get("rewrites") or {}).items()}
    if not info.get("changed"):
        return OptimizedGraph(src, src, counts, cached=True)
    return OptimizedGraph(target, src, counts, cached=True) if target.is_file() else None


def built_graph(source: str | os.PathLike[str], *, sha256: str | None = None) -> OptimizedGraph | None:
    """What :func:`optimized_graph` would give ``source`` on this CPU where an earlier session has built it,
    without building it (``pvt-deploy info``; ``sha256``: the source's, where the caller has it); None where
    nothing is cached, or the cache cannot be read."""
    src = Path(source)
    names = default_rewrites()
    if not names:
        return OptimizedGraph(src, src)
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, ImportError):
        key = _key(src, names, sha256)
        for folder in (src.parent / CACHE_DIRNAME, _user_cache()):
            found = _cached(src, folder / f"{src.stem}.{key}.onnx", folder / f"{src.stem}.{key}.json")
            if found is not None:
                return found
    return None


def _user_cache() -> Path:
    from pvt_deploy.utils.files import cache_root

    return cache_root() / "ort"


def discard(graph: OptimizedGraph) -> None:
    """Delete a cached copy that turned out unusable (and its record), so the next call rebuilds it."""
    if not graph.changed:
        return
    for path in (graph.path, graph.path.with_suffix(".json")):
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            log.warning("cannot remove the damaged CPU graph %s: %s", path, e)


def default_rewrites() -> tuple[str, ...]:
    """The rewrites of :data:`pvt_deploy.export.optimize.REWRITES` that pay on this CPU: every float
    rewrite, ``int8_channels_last_convs`` and ``int8_gelu_bias``; ``amx_conv_weights`` where the CPU reports AMX-INT8 (without AMX, ONNX Runtime's
    symmetric-weight conv kernels are the faster ones); ``winograd_int8_convs`` and
    ``unsigned_int8`` on x86 without VNNI (where 8-bit products run at 1-2x the FP32 rate, short of
    Winograd's 4x, U8S8 ones saturate and U8U8 ones are exact)."""
    from pvt_deploy.export.optimize import REWRITES
    from pvt_deploy.utils.cpu import cpu_amx_int8, cpu_int8_dot_product

    no_vnni = cpu_int8_dot_product() is False
    wanted = {"amx_conv_weights": cpu_amx_int8(), "winograd_int8_convs": no_vnni, "unsigned_int8": no_vnni}
    return tuple(r for r in REWRITES if wanted.get(r, True))


def _build(src: Path, names: Sequence[str], target: Path, record: Path) -> OptimizedGraph:
    import onnx

    from pvt_deploy.export.optimize import optimize_for_ort
    from pvt_deploy.utils.files import atomic_path, atomic_write_text, json_dumps, remove_abandoned_temps

    remove_abandoned_temps(target.parent)  # a build that was killed in mid-write
    model = onnx.load(str(src))
    optimized, report = optimize_for_ort(model, names)
    changed = any(report.rewrites.values())
    target.parent.mkdir(parents=True, exist_ok=True)
    if changed:
        with atomic_path(target) as tmp:
            onnx.save_model(optimized, str(tmp))
    atomic_write_text(record, json_dumps({"source": str(src.resolve()), "changed": changed, **report.to_json()},
                                         indent=1))
    _prune_stale(src, record)
    if changed:
        # beside the source, named relative to it: an export's staging folder is renamed afterwards
        shown = target.relative_to(src.parent) if target.is_relative_to(src.parent) else target
        done = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in report.rewrites.items() if n)
        log.info("%s: rewritten for this CPU (%s), kept in %s", src.name, done, shown.parent)
        log.debug("%s: this CPU's graph is %s", src.name, shown)
        return OptimizedGraph(target, src, dict(report.rewrites))
    return OptimizedGraph(src, src, dict(report.rewrites))


def adopt_cached_graphs(built: Path, cache: Path) -> None:
    """Move the entries built in the cache folder ``built`` (an export extension's, made while its
    variants were gated in a hidden folder) into ``cache``, where sessions of those files then find
    them, deleting ``cache``'s entries for the same file names: the files they were built for replaced
    those."""
    if not built.is_dir():
        return
    with contextlib.suppress(OSError):
        cache.mkdir(exist_ok=True)
        new = [p for p in built.iterdir() if _ENTRY.fullmatch(p.name)]
        stems = {m.group(1) for p in new if (m := _ENTRY.fullmatch(p.name))}
        for stale in list(cache.iterdir()):
            m = _ENTRY.fullmatch(stale.name)
            if m and m.group(1) in stems:
                stale.unlink()
        for p in new:
            os.replace(p, cache / p.name)


def _prune_stale(src: Path, keep: Path) -> None:
    """Delete the copies an earlier recipe or version built for the same source (a detector's copy
    is ~260 MB): records beside ``keep`` named ``<stem>.<key>.json`` — in the source's own
    ``.ort-cache`` all of them, in the per-user cache those whose ``source`` is ``src`` (copies of
    other sources sharing that folder are never touched)."""
    me = src.resolve()
    # The .ort-cache beside a source serves that one file (its recorded path may be the hidden folder
    # the export was built in before it was renamed into place); the per-user cache serves many.
    beside = keep.parent.resolve() == me.parent / CACHE_DIRNAME
    for other in keep.parent.glob(f"{src.stem}.*.json"):
        entry = _ENTRY.fullmatch(other.name)
        if other == keep or not entry or entry.group(1) != src.stem:
            continue
        try:
            if not beside and Path(json.loads(other.read_text(encoding="utf-8")).get("source", "")).resolve() != me:
                continue
            other.with_suffix(".onnx").unlink(missing_ok=True)
            other.unlink(missing_ok=True)
            log.info("%s: removed the stale CPU graph %s", src.name, other.with_suffix(".onnx").name)
        except (OSError, ValueError, AttributeError):
            continue  # unreadable or racing with another process: leave it
