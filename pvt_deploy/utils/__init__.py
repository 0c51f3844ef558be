"""Small helpers shared by the CLI, the Python API, the exporter and the benchmarks."""

from __future__ import annotations

import numbers
import operator
import re
import shlex
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, SupportsIndex, TypeGuard, cast

if TYPE_CHECKING:
    import onnx

__all__ = ["IR_VERSION", "MB", "file_size", "gigabytes", "is_integer", "is_number", "joined_lines", "megabytes", "one_line",
           "onnx_model", "shell_quote", "size_pair"]

IR_VERSION = 8
"""IR version of the small ONNX graphs built by hand (probes, tests): what ``torch.onnx`` writes for
the exports, and what every ONNX Runtime since 1.10 loads. ``onnx.helper.make_model`` writes its own
newest (14 with onnx 1.23), which onnxruntime 1.31 and older refuse ("Unsupported model IR version")."""


def onnx_model(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    """``graph`` as a model of the default domain at ``opset``, IR :data:`IR_VERSION`."""
    from onnx import helper

    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)


def size_pair(value: int | str | Sequence[int] | None, *, what: str = "imgsz") -> tuple[int, int] | None:
    """An input size as (height, width): ``640`` or ``"640"`` -> (640, 640); ``"480,640"``,
    ``"480x640"``, ``"480 640"`` or ``(480, 640)`` -> (480, 640). ``None`` or an empty string: ``None``.

    The one parser of ``--imgsz`` / ``imgsz=`` everywhere (the exporter adds its stride rules on
    top). Anything else — a word, three numbers, a size below 1, a float, ``True`` — is an
    :class:`~pvt_deploy.errors.InputError` naming ``what``.
    """
    from pvt_deploy.errors import InputError

    def refuse(why: str) -> InputError:
        return InputError(f"{what} {value!r}: {why} (expected H, H,W or HxW, e.g. 640 or 480x640)")

    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        parts = re.split(r"\s*[,x*×]\s*|\s+", text.lower())
        if "" in parts:  # "224x", ",640", "480,,640": a side is missing, not a square
            raise refuse("a number is missing")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise refuse("not whole numbers") from None
    elif is_integer(value):
        values = [operator.index(value)]
    elif isinstance(value, Sequence) and all(is_integer(v) for v in value):
        values = [operator.index(cast(SupportsIndex, v)) for v in value]
    else:
        raise refuse("not whole numbers")
    if len(values) not in (1, 2):
        raise refuse("not one or two numbers")
    if min(values) < 1:
        raise refuse("each side must be at least 1")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def is_integer(v: object) -> TypeGuard[SupportsIndex]:
    """An integer (Python's or NumPy's), not a bool: what a count or an id setting may be."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def whole_number(name: str, value: object, *, minimum: int = 1) -> int:
    """A whole-number setting (``max_det``, ``batch``, ``decimals``...): a Python or NumPy integer, not a
    bool, from ``minimum`` up; anything else is one :class:`~pvt_deploy.errors.InputError` line."""
    if not is_integer(value) or int(value) < minimum:
        from pvt_deploy.errors import InputError

        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def is_number(v: object) -> bool:
    """A real number (Python's or NumPy's), not a bool: what a threshold or a fraction may be."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


MB = 1e6
"""A megabyte as every size pvt-deploy prints is counted: 10^6 bytes, as file managers show sizes (not MiB): bench's
memory, info's and export's file sizes, a download's progress."""


def megabytes(n: float) -> float:
    """``n`` bytes in MB (:data:`MB`)."""
    return n / MB


def file_size(n: float) -> str:
    """A byte count in the decimal unit that suits it, one decimal: ``512 B``, ``3.4 kB``, ``12.3 MB``, ``1.2 GB``;
    a count that would read 1000 of a unit once rounded is 1.0 of the next (999,960 bytes: ``1.0 MB``)."""
    for unit in ("B", "kB", "MB"):
        text = f"{n:.0f}" if unit == "B" else f"{n:.1f}"
        if float(text) < 1000:
            return f"{text} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def gigabytes(n: float) -> str:
    """A byte count for a message: ``2.4 GB`` (one decimal), ``155 GB`` and ``1,555 GB`` from 10 GB up."""
    return f"{n / 1e9:,.0f} GB" if n >= 1e10 else f"{n / 1e9:.1f} GB"


def count_of(n: int, noun: str, plural: str | None = None) -> str:
    """``3 frames``, ``1 frame``: a count with its noun, plural but for one (``plural`` where it is not the noun and
    an s: ``count_of(2, "class", "classes")``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def one_line(text: str) -> str:
    """``text`` as the one line it is meant to be on a terminal: a character that breaks or moves the
    line (a newline, a carriage return, a tab, a terminal's escape code), which a file's name may hold,
    is written as Python's repr writes it (``new\\nline.mp4``); every other character as it is."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def joined_lines(text: object) -> str:
    """A library's message (OpenCV's, FFmpeg's, Pillow's, the system's) as words of one line of ours: its lines
    joined by one space, each with the white space at its ends, the white space within a line as it is. OpenCV's
    errors end in a newline, and a warning or an error that quoted one as it was came out with a ``\\n`` written
    in it (:func:`one_line`, the CLI's, which keeps the newline a file's name holds, since it is part of the name),
    or as two lines in a log of its own. Within a line the spaces are kept: a file's name the message quotes
    (``Permission denied: 'a  b.txt'``) is said as it is on disk, where every run of white space made one space
    named a file that is not there."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


_NOT_TEXT = re.compile("([\ud800-\udfff]+)")  # lone surrogates: bytes of a file name that are not UTF-8


def shell_quote(word: str) -> str:
    """``word`` as one word of a command to paste into a shell: :func:`shlex.quote`, also where it holds
    bytes that are not UTF-8. Python keeps those of a file name as lone surrogates (``b"caf\\xe9"`` is
    ``"caf\\udce9"``), which shlex.quote left in the text: the command said ``'caf\\udce9'``, a folder
    that does not exist, or failed to print where the output is strict UTF-8. They are written in
    ANSI-C quoting, ``caf$'\\xe9'`` (as GNU ls shows such a name), which bash, zsh, ksh and POSIX sh
    (2024) read back as the very bytes; every other word is shlex.quote's."""
    if not _NOT_TEXT.search(word):
        return shlex.quote(word)
    out = []
    for i, part in enumerate(_NOT_TEXT.split(word)):
        if i % 2:
            out.append("$'" + "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                                      else f"\\u{ord(c):04x}" for c in part) + "'")
        elif part:
            out.append(shlex.quote(part))
    return "".join(out)
