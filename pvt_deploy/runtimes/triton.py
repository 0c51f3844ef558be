"""A Triton Inference Server model as a :class:`Backend`.

URLs: ``triton://host:8000/model`` (HTTP), ``triton+grpc://host:8001/model`` (gRPC); ``triton+https``
and ``triton+grpcs`` use TLS; ``/model/2`` pins a model version. Ports default to Triton's 8000/8001.

The server runs the graph; everything else stays on the client, as with every backend: the shared
pre/post-processing needs the pvt-deploy manifest, which ``pvt-deploy export --format triton`` embeds
in the model configuration (string parameter ``pvt_deploy_manifest``, see
:mod:`pvt_deploy.export.triton`) precisely so that a client that cannot see the model repository can
still fetch it over the wire. For a model deployed by other means pass ``manifest=`` (a manifest.json
or an export folder).

Failure modes map onto the project's errors with one line each: tritonclient missing or server
unreachable -> :class:`BackendUnavailableError`; model unknown, not ready or without a manifest ->
:class:`InputError`; a request the server rejects -> :class:`InputError` (bad shape/dtype) or
:class:`PvtDeployError`. Connection-level failures are retried with a short backoff (a server that is
restarting, a dropped keep-alive); requests the server answered are not retried, except its answer
'unavailable' (HTTP 503, gRPC UNAVAILABLE: a full queue, a rate limit), which asks for a retry. Both end
as :class:`BackendUnavailableError`, saying which: 'not reachable' (nothing answered) or "answered
'unavailable'" (the server is up: overloaded or the model not ready).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from pvt_deploy.errors import BackendUnavailableError, InputError, PvtDeployError, ShapeError
from pvt_deploy.manifest import check_fields
from pvt_deploy.runtimes.base import Backend, BackendInfo, TensorSpec, one_line

MANIFEST_PARAMETER = "pvt_deploy_manifest"  # same key as pvt_deploy.export.triton (kept import-free)
SCHEMES = {"triton": ("http", False), "triton+http": ("http", False), "triton+https": ("http", True),
           "triton+grpc": ("grpc", False), "triton+grpcs": ("grpc", True)}
_DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
_TRITON_TO_NUMPY = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
                    "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
                    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object"}
_NUMPY_TO_TRITON = {v: k for k, v in _TRITON_TO_NUMPY.items()}
# numpy has no bfloat16: a BF16 tensor is float32 to the caller, as a BF16 TensorRT engine's is, and BF16
# on the wire (tritonclient's own bfloat16 dtype, ml_dtypes', is what it sends and decodes)
_WIDENED = {"BF16": "float32"}
_T = TypeVar("_T")


def is_triton_url(text: str | os.PathLike[str]) -> bool:
    """True for ``triton://...`` style strings (what the loader routes here)."""
    return isinstance(text, str) and text.split("://", 1)[0].lower() in SCHEMES and "://" in text


@dataclass(frozen=True)
class TritonURL:
    protocol: str  # "http" | "grpc"
    ssl: bool
    host: str
    port: int
    model: str
    version: str  # "" = the server's policy (latest)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        scheme = next(k for k, v in SCHEMES.items() if v == (self.protocol, self.ssl))
        tail = f"/{self.version}" if self.version else ""
        return f"{scheme}://{self.address}/{self.model}{tail}"


def parse_triton_url(url: str) -> TritonURL:
    """Parse ``triton[+grpc]://host[:port]/model[/version]``; raise :class:`InputError` if malformed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InputError(f"{url}: not a Triton URL (use triton://host:8000/model or triton+grpc://host:8001/model)")
    protocol, ssl = SCHEMES[scheme]
    try:
        port = parts.port or _DEFAULT_PORTS[protocol]
    except ValueError as e:
        raise InputError(f"{url}: bad port ({e})") from e
    host = parts.hostname
    segments = [s for s in parts.path.split("/") if s]
    if not host or not segments or len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise InputError(f"{url}: expected {scheme}://host:port/model_name[/version]")
    return TritonURL(protocol, ssl, host, port, segments[0], segments[1] if len(segments) == 2 else "")


class ServerUnavailableError(BackendUnavailableError):
    """The Triton server is up but answered 'unavailable' (HTTP 503, gRPC UNAVAILABLE) to every try."""


def _one_line(e: BaseException) -> str:
    msg = getattr(e, "message", None)
    text = msg() if callable(msg) else str(e)
    return one_line(text or type(e).__name__)


class TritonBackend(Backend):
    """Runs inference on a model served by Triton. ``infer`` splits batches above ``max_batch_size``.

    ``timeout_s`` bounds each network call; ``retries`` connection-level retries use exponential backoff
    from ``backoff_s``; ``ready_timeout_s`` is how long to wait for a model that is still loading (an
    ONNX model with the TensorRT accelerator can take minutes to load the first time).
    """

    def __init__(self, url: str, *, timeout_s: float = 30.0, retries: int = 2, backoff_s: float = 0.5,
                 ready_timeout_s: float = 60.0, manifest: Mapping[str, Any] | None = None) -> None:
        self.url = parse_triton_url(url)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        # One client per thread: tritonclient's HTTP client runs on gevent, whose connections work only
        # in the thread that made them, and a pipeline runs inference in a thread of its own. Over HTTP
        # every call is made on one thread of the backend's own: a client (and the gevent hub under it,
        # two file descriptors) made in each run's inference thread outlived that thread, so a Model
        # predicting video after video ran out of file descriptors.
        self._local = threading.local()
        self._http_thread = _CallThread(f"pvt-deploy-triton {self.url.model}") if self.url.protocol == "http" else None
        self._clients: list[tuple[threading.Thread, Any]] = []
        self._clients_lock = threading.Lock()
        self._closed = False
        if self._http_thread is not None:
            _http_backends.add(self)
        try:
            if self.url.protocol == "http":
                import tritonclient.http as client_mod
            else:
                import tritonclient.grpc as client_mod
            from tritonclient.utils import InferenceServerException
        except (ImportError, RuntimeError) as e:  # tritonclient raises RuntimeError when an extra is missing
            raise BackendUnavailableError(f"{self.url}: tritonclient[{self.url.protocol}] is not installed ({_one_line(e)})",
                                          hint='pip install "pvt-deploy[triton]"') from e
        self._mod = client_mod
        self._server_error = InferenceServerException
        try:
            server = self._wait_server()
            self._wait_model(ready_timeout_s)
            metadata = self._call(self._get_metadata)
            config = self._call(self._get_config)
            self.manifest: dict[str, Any] | None = (dict(manifest) if manifest is not None
                                                    else _embedded_manifest(config, str(self.url)))
        except BaseException:
            self.close()
            raise
        self.config = config
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        ref = self.manifest or {}
        self._inputs = [self._spec(t, ref.get("inputs")) for t in metadata.get("inputs", [])]
        self._outputs = [self._spec(t, ref.get("outputs")) for t in metadata.get("outputs", [])]
        self._widened = {str(t["name"]): str(t.get("datatype")) for t in (*metadata.get("inputs", []),
                         *metadata.get("outputs", [])) if str(t.get("datatype")) in _WIDENED}
        triton = ref.get("triton") or {}
        self.info = BackendInfo(
            name="triton",
            device=str(self.url),
            precision=str(triton.get("precision", "fp32")),
            details={"protocol": self.url.protocol, "server_version": server.get("version"),
                     "model": self.url.model, "model_versions": metadata.get("versions"),
                     "platform": metadata.get("platform"), "backend": config.get("backend"),
                     "max_batch_size": self.max_batch_size},
        )

    @property
    def profiles(self) -> list[dict[str, Any]]:
        """The TensorRT optimisation profile the served model runs in (``{"input", "min", "opt", "max"}``
        per input, as :attr:`TensorRTBackend.profiles`): the onnxruntime backend's TensorRT accelerator
        profile ``export_triton`` wrote, or a served engine's. The pipeline keeps its input sizes inside it
        (a size outside is refused in one line before it is sent); empty where the manifest names none."""
        ref = self.manifest or {}
        triton = ref.get("triton") or {}
        profiles = triton.get("tensorrt_profiles")
        if not profiles and (self.config.get("backend") == "tensorrt" or self.config.get("platform") == "tensorrt_plan"):
            profiles = (ref.get("tensorrt") or {}).get("profiles")
        return [dict(p) for p in profiles or [] if isinstance(p, Mapping) and {"min", "max"} <= set(p)]

    @property
    def _client(self) -> Any:
        """This thread's client, made on its first call here."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def _new_client(self) -> Any:
        mod = self._mod
        try:
            if self.url.protocol == "http":
                client = mod.InferenceServerClient(self.url.address, connection_timeout=self.timeout_s,
                                                   network_timeout=self.timeout_s, ssl=self.url.ssl)
            else:
                client = mod.InferenceServerClient(self.url.address, ssl=self.url.ssl)
        except Exception as e:
            raise BackendUnavailableError(f"{self.url}: cannot create a Triton client ({_one_line(e)})") from e
        with self._clients_lock:
            closed = self._closed
            # a gRPC client of a thread that has ended (a finished run's inference thread) is not used
            # again: closed now rather than kept (with its channel) until the backend closes
            ended = [c for t, c in self._clients if not t.is_alive()]
            self._clients = [(t, c) for t, c in self._clients if t.is_alive()]
            if not closed:
                self._clients.append((threading.current_thread(), client))
        for old in ended:
            with contextlib.suppress(Exception):
                old.close()
        if closed:  # close() ran while this one was being made
            with contextlib.suppress(Exception):
                client.close()
            raise self._closed_error()
        return client

    def _closed_error(self) -> InputError:
        """What a call on a closed backend raises: an InputError ("... is closed"), as every backend's (README)."""
        return InputError(f"{self.url}: this TritonBackend is closed")

    # -- protocol-specific calls (HTTP returns dicts; gRPC returns protobufs unless as_json) ----------

    def _kw(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout_s} if self.url.protocol == "grpc" else {}

    def _get_metadata(self) -> dict[str, Any]:
        c, u = self._client, self.url
        if u.protocol == "grpc":
            return dict(c.get_model_metadata(u.model, u.version, as_json=True, **self._kw()))
        return dict(c.get_model_metadata(u.model, u.version))

    def _get_config(self) -> dict[str, Any]:
        c, u = self._client, self.url
        if u.protocol == "grpc":
            return dict(c.get_model_config(u.model, u.version, as_json=True, **self._kw()).get("config", {}))
        return dict(c.get_model_config(u.model, u.version))

    def _get_index(self) -> list[dict[str, Any]]:
        c = self._client
        if self.url.protocol == "grpc":
            return list(c.get_model_repository_index(as_json=True, **self._kw()).get("models", []))
        return list(c.get_model_repository_index())

    def _get_server(self) -> dict[str, Any]:
        c = self._client
        if self.url.protocol == "grpc":
            return dict(c.get_server_metadata(as_json=True, **self._kw()))
        return dict(c.get_server_metadata())

    # -- retries and readiness ----------------------------------------------------------------------

    def _is_connection_error(self, e: BaseException) -> bool:
        if isinstance(e, self._server_error):
            status = str(e.status() or "")
            # gRPC reports transport failures as UNAVAILABLE / DEADLINE_EXCEEDED; HTTP ones are OSErrors,
            # or http.client.HTTPExceptions where a connection closed before its answer (a server that
            # died or restarted mid-request: geventhttpclient's HTTPConnectionClosed)
            return "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status
        return (isinstance(e, OSError | TimeoutError | http.client.HTTPException)
                or type(e).__name__ == "Timeout")  # gevent.Timeout

    def _is_503(self, e: BaseException) -> bool:
        """HTTP's 503 Service Unavailable: the server answered, and asks for a retry."""
        return isinstance(e, self._server_error) and str(e.status() or "") == "503"

    def _answered_unavailable(self, e: BaseException) -> bool:
        """``e`` is the server's own answer 'unavailable' (a full queue, a rate limit, a model not ready):
        HTTP's 503; for gRPC, UNAVAILABLE is also what the client reports when nothing answered (connection
        refused, a dropped connection), so there it is the server's answer where the server answers a
        liveness call now."""
        if self._is_503(e):
            return True
        if not isinstance(e, self._server_error) or "UNAVAILABLE" not in str(e.status() or ""):
            return False
        try:
            return bool(self._on_client_thread(lambda: self._client.is_server_live(**self._kw())))
        except Exception:
            return False

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` with connection-level retries; a server answer (even an error) is final, except
        'unavailable' (HTTP 503, gRPC UNAVAILABLE), which asks for a retry and is retried the same way
        over both protocols."""
        for attempt in range(self.retries + 1):
            try:
                return self._on_client_thread(fn)
            except Exception as e:
                if not (self._is_503(e) or self._is_connection_error(e)):
                    raise
                if attempt == self.retries:
                    if self._answered_unavailable(e):
                        raise ServerUnavailableError(
                            f"{self.url}: the Triton server at {self.url.address} answered 'unavailable' "
                            f"after {self.retries + 1} tries ({_one_line(e)})",
                            hint="it is up but overloaded (queue full, rate limited) or the model is not "
                                 "ready: retry later, see the tritonserver log") from e
                    raise BackendUnavailableError(
                        f"{self.url}: Triton server not reachable at {self.url.address} ({_one_line(e)})",
                        hint="is tritonserver running and the port published?") from e
                time.sleep(self.backoff_s * (2 ** attempt))
        raise AssertionError("unreachable")

    def _on_client_thread(self, fn: Callable[[], _T]) -> _T:
        """``fn()``, run on the backend's HTTP thread (see ``__init__``); for gRPC, here."""
        caller = self._http_thread
        if caller is None:
            if self._closed or self.url.protocol == "http":  # gRPC's closed client would raise a bare ValueError
                raise self._closed_error()
            return fn()
        return caller.run(fn, closed=self._closed_error)

    def _wait_server(self) -> dict[str, Any]:
        live = self._call(lambda: self._client.is_server_live(**self._kw()))
        if not live:
            raise BackendUnavailableError(f"{self.url}: Triton server at {self.url.address} is not live")
        return self._call(self._get_server)

    def _try_index(self) -> list[dict[str, Any]] | None:
        """The repository index, or None where the server restricts that API (PyTriton, --*-restricted-api).

        No retries: the server just answered a readiness call, and gRPC reports a restricted API with
        the same UNAVAILABLE status as a dropped connection.
        """
        try:
            return self._on_client_thread(self._get_index)
        except Exception:
            return None

    def _wait_model(self, ready_timeout_s: float) -> None:
        u = self.url
        deadline = time.monotonic() + max(0.0, ready_timeout_s)
        while True:
            if self._call(lambda: self._client.is_model_ready(u.model, u.version, **self._kw())):
                return
            where = f"version {u.version} of " if u.version else ""
            index = self._try_index()
            if index is None:
                # No index to consult: the metadata call says whether the model exists at all.
                try:
                    self._call(self._get_metadata)
                except ServerUnavailableError:
                    pass  # up, the model not ready yet: wait for it as below
                except self._server_error as e:
                    message = _one_line(e)
                    if "unknown model" in message.lower() or "not found" in message.lower():
                        raise InputError(f"{u}: Triton has no {where}model {u.model!r} ({message})") from e
                if time.monotonic() >= deadline:
                    raise InputError(f"{u}: model {u.model!r} is not ready", hint="see the tritonserver log")
                time.sleep(0.5)
                continue
            entries = [m for m in index
                       if m.get("name") == u.model and (not u.version or str(m.get("version")) == u.version)]
            if not entries:
                names = sorted({str(m.get("name")) for m in index if m.get("name")})
                raise InputError(f"{u}: Triton has no {where}model {u.model!r} "
                                 f"(models here: {', '.join(names) or 'none'})")
            states = {str(m.get("state", "")).upper() for m in entries}
            if "LOADING" not in states or time.monotonic() >= deadline:
                reason = "; ".join(str(m.get("reason")) for m in entries if m.get("reason"))
                state = "/".join(sorted(s for s in states if s)) or "not ready"
                raise InputError(f"{u}: model {u.model!r} is {state.lower()}" + (f" ({reason})" if reason else ""),
                                 hint="see the tritonserver log")
            time.sleep(0.5)

    # -- specs ---------------------------------------------------------------------------------------

    def _spec(self, tensor: Mapping[str, Any], reference: Any) -> TensorSpec:
        name = str(tensor["name"])
        datatype = str(tensor.get("datatype", "FP32"))
        shape = [int(d) for d in tensor.get("shape", [])]  # gRPC JSON writes int64 as strings
        ref_shape: list[Any] = []
        if isinstance(reference, list):
            for r in reference:
                if isinstance(r, Mapping) and r.get("name") == name and len(r.get("shape") or []) == len(shape):
                    ref_shape = list(r["shape"])
        dims: list[int | str] = []
        for i, d in enumerate(shape):
            if d >= 0:
                dims.append(d)
            elif ref_shape and isinstance(ref_shape[i], str):
                dims.append(ref_shape[i])
            else:
                dims.append("batch" if i == 0 and self.max_batch_size > 0 else f"dim{i}")
        dtype = _WIDENED.get(datatype) or _TRITON_TO_NUMPY.get(datatype, datatype.lower())
        return TensorSpec(name=name, dtype=dtype, shape=tuple(dims))

    # -- inference -----------------------------------------------------------------------------------

    def _check_feed(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [s.name for s in self._inputs if s.name not in feed]
        unknown = [k for k in feed if k not in {s.name for s in self._inputs}]
        if missing or unknown:
            raise InputError(f"{self.url}: feed needs inputs {[s.name for s in self._inputs]}, got {list(feed)}")
        arrays: dict[str, np.ndarray] = {}
        batch = None
        for spec in self._inputs:
            a = np.asarray(feed[spec.name])
            dims = a.shape if spec.shape is None else spec.shape  # None: no rank declared
            fixed_ok = all(isinstance(d, str) or d == n for d, n in zip(dims, a.shape, strict=False))
            if a.ndim != len(dims) or not fixed_ok:
                raise ShapeError(f"{self.url}: input {spec.name!r} needs shape {dims} "
                                 f"(rank {len(dims)}), got {a.shape}")
            if spec.dtype != "object" and a.dtype != np.dtype(spec.dtype):
                if not np.can_cast(a.dtype, spec.dtype, casting="same_kind"):
                    raise InputError(f"{self.url}: input {spec.name!r} needs {spec.dtype}, got {a.dtype}")
                a = a.astype(spec.dtype)
            arrays[spec.name] = np.ascontiguousarray(a)
            if self.max_batch_size > 0:
                if batch is not None and a.shape[0] != batch:
                    raise ShapeError(f"{self.url}: inputs disagree on the batch size")
                batch = a.shape[0]
        return arrays

    def _infer_once(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        mod, u = self._mod, self.url
        inputs = []
        for name, a in arrays.items():
            datatype = self._widened.get(name) or _NUMPY_TO_TRITON.get(a.dtype.name, "BYTES")
            if datatype in _WIDENED:
                from tritonclient.utils import triton_to_np_dtype

                a = a.astype(triton_to_np_dtype(datatype))
            inp = mod.InferInput(name, list(a.shape), datatype)
            if u.protocol == "http":
                inp.set_data_from_numpy(a, binary_data=True)
            else:
                inp.set_data_from_numpy(a)
            inputs.append(inp)
        if u.protocol == "http":
            outputs = [mod.InferRequestedOutput(s.name, binary_data=True) for s in self._outputs]
        else:
            outputs = [mod.InferRequestedOutput(s.name) for s in self._outputs]
        try:
            result = self._call(lambda: self._client.infer(u.model, inputs, model_version=u.version,
                                                           outputs=outputs, **self._kw()))
        except self._server_error as e:
            message = _one_line(e)
            status = str(e.status() or "")
            if "INVALID_ARG" in status or status == "400" or "unexpected shape" in message or "expected" in message:
                raise InputError(f"{u}: Triton rejected the request: {message}") from e
            raise PvtDeployError(f"{u}: Triton inference failed: {message}") from e
        out: dict[str, np.ndarray] = {}
        for spec in self._outputs:
            value = result.as_numpy(spec.name)
            if value is None:
                raise PvtDeployError(f"{u}: Triton returned no output {spec.name!r}")
            out[spec.name] = value.astype(spec.dtype) if spec.name in self._widened else value
        return out

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise self._closed_error()
        arrays = self._check_feed(feed)
        n = next(iter(arrays.values())).shape[0] if arrays else 0
        step = self.max_batch_size
        if step <= 0 or n <= step:
            return self._infer_once(arrays)
        # Larger batches than the model accepts: send them in chunks, in order, and stitch the results.
        parts = [self._infer_once({k: v[i:i + step] for k, v in arrays.items()}) for i in range(0, n, step)]
        return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}

    def profile(self, feed: Mapping[str, np.ndarray], calls: int = 10) -> dict[str, Any]:
        """The model runs on the server, whose runtime alone sees its operators (:meth:`Backend.profile`)."""
        raise BackendUnavailableError(
            "the Triton server runs the model, so its times are the server's own metrics (its :8002/metrics); "
            "to see its operators, bench the model's file here with --profile")

    def _after_fork_in_child(self) -> None:
        """A forked child has none of its parent's threads: the HTTP thread, whose gevent hub the
        clients run on, stayed in the parent, and every call waited for it for ever. The child gets a
        thread of its own, which makes its own client; the parent's are left to the parent."""
        self._clients_lock = threading.Lock()  # a thread of the parent may have held it at the fork
        self._clients = []
        if self._http_thread is not None and not self._closed:
            self._http_thread = _CallThread(f"pvt-deploy-triton {self.url.model}")

    def close(self) -> None:
        with self._clients_lock:
            self._closed = True
            clients, self._clients = self._clients, []
            caller, self._http_thread = self._http_thread, None

        def close_clients() -> None:
            for _, client in clients:
                # Closing a broken connection (or another thread's) must not mask the error that led here.
                with contextlib.suppress(Exception):
                    client.close()

        def close_on_client_thread() -> None:
            close_clients()
            _close_gevent_hub()

        if caller is None:
            close_clients()
        else:  # on the thread that made the client (after a call in flight), with its gevent hub
            caller.close(close_on_client_thread)


_http_backends: weakref.WeakSet[TritonBackend] = weakref.WeakSet()  # those whose calls run on a _CallThread


def _after_fork_in_child() -> None:
    for backend in list(_http_backends):
        backend._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _CallThread:
    """One daemon thread running the calls given to :meth:`run` in turn (a daemon, so that a call
    to a server that hangs never holds up the exit of an interrupted run)."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, future = item
            try:
                future.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
                future.set_exception(e)
            del fn, future, item

    def run(self, fn: Callable[[], _T], *, closed: Callable[[], Exception]) -> _T:
        future: Future[_T] = Future()
        with self._lock:
            if self._closed:
                raise closed()
            self._calls.put((fn, future))
        return future.result()

    def close(self, last: Callable[[], object]) -> None:
        """Run ``last`` after the calls already given, then end the thread (without waiting for it)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._calls.put((last, Future()))
                self._calls.put(None)


def _close_gevent_hub() -> None:
    """Destroy this thread's gevent hub, where it has one (its event loop holds two file descriptors)."""
    hub_module = sys.modules.get("gevent.hub")
    hub = getattr(hub_module, "get_hub", None)
    if hub is not None:
        with contextlib.suppress(Exception):
            hub().destroy(destroy_loop=True)


def _embedded_manifest(config: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """The manifest ``export_triton`` put in the model's config, None where there is none; one that
    is not a manifest, or whose fields do not hold what its readers take, is refused as manifest.json is."""
    params = config.get("parameters") or {}
    entry = params.get(MANIFEST_PARAMETER) if isinstance(params, Mapping) else None
    if not entry:
        return None
    text = entry.get("string_value") if isinstance(entry, Mapping) else entry
    record = "manifest in its Triton config"
    try:
        data = json.loads(str(text))
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: damaged {record} (parameter {MANIFEST_PARAMETER!r}: {e})") from e
    if not isinstance(data, dict) or "task" not in data:
        raise InputError(f"{where}: the {record} (parameter {MANIFEST_PARAMETER!r}) is not a pvt-deploy manifest")
    check_fields(data, where, record)
    return data


def _read_manifest_arg(manifest: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(manifest, Mapping):
        return dict(manifest)
    from pvt_deploy.manifest import read_manifest

    return read_manifest(manifest)  # an export folder or a manifest file


def load_triton(url: str, *, manifest: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                timeout_s: float = 30.0, retries: int = 2,
                ready_timeout_s: float = 60.0) -> tuple[TritonBackend, dict[str, Any]]:
    """Connect to a Triton model and return ``(backend, manifest)``, as the loader does for files.

    The manifest comes from ``manifest`` when given, else from the model configuration's
    ``pvt_deploy_manifest`` parameter written by ``pvt-deploy export --format triton``.
    """
    override = _read_manifest_arg(manifest) if manifest is not None else None
    backend = TritonBackend(url, timeout_s=timeout_s, retries=retries, ready_timeout_s=ready_timeout_s,
                            manifest=override)
    if backend.manifest is None:
        backend.close()
        raise InputError(f"{backend.url}: the model's Triton config carries no pvt-deploy manifest "
                         f"(parameter {MANIFEST_PARAMETER!r})",
                         hint="export it with pvt-deploy export --format triton, or pass its manifest.json")
    return backend, backend.manifest
