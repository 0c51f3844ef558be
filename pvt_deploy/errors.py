"""User-facing errors.

Every error a user can cause (bad path, wrong checkpoint, missing library, engine for another GPU)
is raised as a :class:`PvtDeployError`. The CLI prints its message as one line and exits with
``exit_code``; Python callers catch it like any exception. An :class:`OSError` (the machine's files,
disks and network failing) escaping the CLI is one line naming its file too, exit 2, its traceback only
with ``--verbose``; anything else escaping the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_CLI_SPELLING = False  # True while a pvt-deploy command runs (cli_spelling)
_RENAMED: dict[str, str] = {}  # a setting that the running command or function takes under another name (renamed)


def option(name: str) -> str:
    """A setting's name as the user gave it, for a message: the option (``--max-det``) while a
    ``pvt-deploy`` command runs, else the Python argument (``max_det``); within :func:`renamed`, the
    name given there (``backend`` is ``--backends`` in ``bench`` and ``check``)."""
    name = _RENAMED.get(name, name)
    return "--" + name.replace("_", "-") if _CLI_SPELLING else name


def switched_on(name: str) -> str:
    """A yes/no setting turned on, for a message: the flag (``--dynamic``) while a ``pvt-deploy``
    command runs, else the Python argument with its value (``dynamic=True``)."""
    return option(name) if _CLI_SPELLING else f"{option(name)}=True"


@contextlib.contextmanager
def renamed(**names: str) -> Iterator[None]:
    """Within: :func:`option` spells each setting ``key`` as ``names[key]``, for code shared with a
    caller that takes it under another name (the loader's ``backend``, which ``bench`` and ``check``
    take as ``--backends`` / ``backends=``, a list of labels that includes each backend's name)."""
    before = dict(_RENAMED)
    _RENAMED.update(names)
    try:
        yield
    finally:
        _RENAMED.clear()
        _RENAMED.update(before)


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within: :func:`option` names the CLI's options. The CLI's entry point runs its command inside,
    so one error raised by code both serve (``Model``, the loader, the pipeline) names what was typed."""
    global _CLI_SPELLING
    before, _CLI_SPELLING = _CLI_SPELLING, True
    try:
        yield
    finally:
        _CLI_SPELLING = before


class PvtDeployError(Exception):
    """An error with a message meant for the user. ``hint`` is an optional command or next step."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:  # one line, hint appended
        msg = super().__str__()
        return f"{msg} ({self.hint})" if self.hint else msg


def stop_reason(error: BaseException | None) -> str:
    """Why a run that keeps its partial output stopped, for a warning: a user error's own message
    (``"...: a 3840x2160 video needs about 2.0 GiB ..."``), ``"interrupted"`` for Ctrl-C, else the
    exception's type (an unexpected failure, whose traceback the CLI reports itself)."""
    if isinstance(error, PvtDeployError):
        from pvt_deploy.utils import joined_lines

        return joined_lines(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"stopped by {type(error).__name__}"


class InputError(PvtDeployError):
    """A file, folder, stream or argument given by the user cannot be used."""

    exit_code = 2


def cannot_read(path: object, error: OSError) -> InputError:
    """What a file the system fails to read (EIO from a failing disk or network mount, a permission) is told,
    wherever it is read: ``cannot read X: Input/output error``, not that the file is malformed, nor that a write
    failed."""
    return InputError(f"cannot read {path}: {error.strerror or error}")


def one_of(name: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    """``value`` of a setting that takes a fixed set of words, as the choice it names in any case (``--task
    Detect`` is ``detect``, as a backend's and a format's names are); a word that names none is an InputError
    naming ``name`` (:func:`option`'s spelling) and the choices."""
    folded = {c.lower(): c for c in choices}
    if not isinstance(value, str) or value.lower() not in folded:
        raise InputError(f"{name} {value!r}: choose one of {', '.join(choices)}")
    return folded[value.lower()]


class CheckpointError(PvtDeployError):
    """A checkpoint does not fit the model it is loaded into, or cannot be read safely (bad input: exit 2)."""

    exit_code = 2


class ModelNotFoundError(InputError):
    """Unknown model / zoo name or artifact path."""


class ForeignOnnxError(InputError):
    """An ONNX model that pvt-deploy did not make (no pvt-deploy metadata, no manifest listing it): nothing
    says its preprocessing or classes, so it cannot run as a model; ``info`` describes it all the same."""


class BackendUnavailableError(PvtDeployError):
    """A runtime library (TensorRT, CUDA, onnxruntime-gpu, tritonclient) is not installed or usable here."""

    exit_code = 3


class EngineMismatchError(PvtDeployError):
    """A TensorRT engine was built for another GPU, TensorRT version or platform, or its file changed."""

    exit_code = 4


class ShapeError(InputError):
    """An input shape is outside what a graph or engine profile accepts."""


class ParityError(PvtDeployError):
    """Exported model disagrees with PyTorch beyond tolerance."""

    exit_code = 5
