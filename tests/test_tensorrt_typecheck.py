"""Static type check of the TensorRT builder/runtime against the published TensorRT 10.13 stubs.

TensorRT cannot be installed on CPU-only machines, so type checking against ``tensorrt-stubs`` is
what catches a misspelt API or a wrong argument there. Two wrinkles, handled here:

* ``tensorrt-stubs`` 10.13 puts ``.pyi`` files into ``site-packages/tensorrt`` without ``py.typed``;
  ``mypy.ini`` sets ``follow_untyped_imports`` so mypy reads them.
* Its generated ``tensorrt_bindings/tensorrt.pyi`` has a few syntax errors (a parameter named ``in``,
  a non-default parameter after defaults) that stop mypy outright, and its module variable ``bool``
  (TensorRT's ``trt.bool`` data type) shadows the builtin in every ``-> bool``. This module is also a mypy plugin
  (``plugins`` in ``mypy.ini``): when mypy loads it, it writes a repaired copy of the stubs to
  ``.mypy_cache/tensorrt-stubs``, which ``mypy_path`` puts ahead of site-packages. Nothing else in
  the stubs changes, so the check is still against NVIDIA's API as published.

Run ``mypy --config-file mypy.ini``; the test below does the same (slow: ~17 s, mypy keeps no cache), unless
``make typecheck`` has already passed on the same files: it records the key of what it checked (package,
config, plugin, installed distributions) in ``.mypy_cache/typecheck-passed``, as CI runs it before the tests.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STUB_OUT = ROOT / ".mypy_cache" / "tensorrt-stubs"
PASSED = ROOT / ".mypy_cache" / "typecheck-passed"
PACKAGES = ("tensorrt", "tensorrt_bindings")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def _split_params(params: str) -> list[str]:
    """Split a parameter list on top-level commas (annotations contain brackets and commas)."""
    parts, depth, cur = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def repair_stub_line(line: str) -> str:
    """Make one ``def`` line of the generated stubs valid Python (no-op for valid lines)."""
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*(?:->.*)?:\s*(?:\.\.\.)?\s*)$", line)
    if not m:
        return line
    head, params, tail = m.groups()
    fixed, seen_default = [], False
    for p in _split_params(params):
        p = re.sub(r"^(\s*)in(\s*:)", r"\1in_\2", p)  # `in` is a keyword
        name = p.strip()
        if "=" in name:
            seen_default = True
        elif seen_default and not name.startswith("*") and name not in ("/",):
            p = f"{p} = ..."
        fixed.append(p)
    return head + ",".join(fixed) + tail


def repair_stub_text(text: str) -> str:
    """Repair one generated stub file: invalid ``def`` lines, and the shadowed ``bool``.

    The stubs declare TensorRT's ``tensorrt.bool`` data type as a module variable ``bool``, which
    shadows the builtin in every ``-> bool`` of the same file, so mypy would read those methods as
    returning nonsense. Annotations get ``builtins.bool``; the variable itself stays.
    """
    lines = [repair_stub_line(line) for line in text.split("\n")]
    lines = [line if line.startswith("bool:") else re.sub(r"(?<![.\w])bool\b", "builtins.bool", line)
             for line in lines]
    out = "\n".join(lines)
    if "builtins.bool" in out:
        out = "import builtins\n" + out
    ast.parse(out)  # still broken: fail loudly rather than check against nothing
    return out


def repair_stubs(out: Path = STUB_OUT) -> Path | None:
    """Write a repaired copy of the installed TensorRT stubs to ``out``; None if they are absent."""
    sources = {name: _package_dir(name) for name in PACKAGES}
    if any(d is None or not any(d.glob("*.pyi")) for d in sources.values()):
        return None
    for name, src in sources.items():
        assert src is not None
        dst = out / name
        dst.mkdir(parents=True, exist_ok=True)
        for pyi in src.glob("*.pyi"):
            text = repair_stub_text(pyi.read_text(encoding="utf-8"))
            target = dst / pyi.name
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, target)
    return out


# --- mypy plugin entry point: repair the stubs before mypy looks for modules -----------------------

def plugin(version: str) -> Any:
    from mypy.plugin import Plugin

    repair_stubs()
    return Plugin


# --- what `make typecheck` checked: its key, taken before mypy runs, written once it passed ----------------

def typecheck_key(root: Path = ROOT) -> str:
    """A digest of everything a run of ``mypy --config-file mypy.ini`` in ``root`` depends on: the package's
    sources, the config, this plugin, and the Python and distributions installed (mypy and its typeshed, the
    stubs and the typed libraries it follows). The same key, the same result."""
    h = hashlib.sha256(f"{sys.version}\0{sys.prefix}\0{os.environ.get('MYPYPATH', '')}\0".encode())
    site = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})  # not the sys.path of the caller
    for dist in sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions(path=site)):
        h.update(dist.encode() + b"\0")
    sources = [p for p in (root / "pvt_deploy").rglob("*") if p.suffix in (".py", ".pyi") or p.name == "py.typed"]
    for path in sorted([root / "mypy.ini", root / "tests" / Path(__file__).name, *sources]):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def record_pass(key: str) -> None:
    tmp = PASSED.with_name(f".{PASSED.name}.{os.getpid()}.tmp")
    PASSED.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(key + "\n", encoding="utf-8")
    os.replace(tmp, PASSED)


# --- the test ----------------------------------------------------------------------------------------

import pytest  # noqa: E402


@pytest.mark.slow
def test_tensorrt_modules_typecheck_against_tensorrt_stubs() -> None:
    """The TensorRT code matches the TensorRT 10.13 API stubs (mypy --strict with mypy.ini's settings). The
    whole package is `make typecheck`'s, which CI runs before the tests: where it passed on these very files
    (and config, plugin and installed packages: the same key), so did these modules, and mypy is not run a
    second time for the same answer. Otherwise (a plain pytest run, files changed since) mypy checks the two
    TensorRT modules here, without typing the whole package."""
    pytest.importorskip("mypy")
    if _package_dir("tensorrt_bindings") is None:
        pytest.skip("tensorrt-stubs not installed (pip install --no-deps tensorrt-stubs)")
    if PASSED.is_file() and PASSED.read_text(encoding="utf-8").strip() == typecheck_key():
        return
    # a child process, as test_api's mypy run: mypy in-process leaves millions of objects behind that
    # slow every later gc.collect() of the test session
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"),
                           str(ROOT / "pvt_deploy" / "export" / "tensorrt.py"),
                           str(ROOT / "pvt_deploy" / "runtimes" / "tensorrt.py")],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_key_of_a_typecheck_follows_every_file_mypy_reads(tmp_path: Path) -> None:
    """The test above trusts a recorded `make typecheck` pass only under the same key: any change to a
    source of the package (a new one included), to mypy.ini or to the plugin gives another key; a file
    mypy does not read (compiled bytecode, data) does not."""
    import shutil

    (tmp_path / "tests").mkdir()
    shutil.copy2(ROOT / "mypy.ini", tmp_path / "mypy.ini")
    shutil.copy2(Path(__file__), tmp_path / "tests" / Path(__file__).name)
    (tmp_path / "pvt_deploy" / "runtimes" / "__pycache__").mkdir(parents=True)
    for name in ("__init__.py", "py.typed", "runtimes/__init__.py", "runtimes/tensorrt.py"):
        shutil.copy2(ROOT / "pvt_deploy" / name, tmp_path / "pvt_deploy" / name)
    keys = [typecheck_key(tmp_path)]
    assert typecheck_key(tmp_path) == keys[0]
    for name, data in (("pvt_deploy/runtimes/__pycache__/tensorrt.cpython-311.pyc", b"\0"),
                       ("pvt_deploy/assets.json", b"{}")):
        (tmp_path / name).write_bytes(data)
        assert typecheck_key(tmp_path) == keys[0], name
    for name, data in (("pvt_deploy/runtimes/tensorrt.py", b"\n"), ("pvt_deploy/runtimes/new.py", b""),
                       ("pvt_deploy/stub.pyi", b""), ("mypy.ini", b"\n"), (f"tests/{Path(__file__).name}", b"\n")):
        with open(tmp_path / name, "ab") as f:
            f.write(data)
        keys.append(typecheck_key(tmp_path))
        assert keys[-1] not in keys[:-1], name
    (tmp_path / "pvt_deploy" / "py.typed").unlink()
    assert typecheck_key(tmp_path) not in keys


def test_stub_repair_fixes_keyword_and_default_order() -> None:
    """The repair turns the two kinds of generated-stub syntax errors into valid signatures."""
    bad = [
        "    def get_workspace_size(self, in: list[int], out: list[int]) -> int:",
        "    def add_scale_nd(self, input: int, shift: W = None, scale: W = None, channel_axis: int) -> L:",
        "    def fine(self, a: dict[str, int] = {}, *args: int) -> None: ...",
    ]
    for line in bad:
        fixed = repair_stub_line(line)
        ast.parse(fixed.strip() + ("" if fixed.rstrip().endswith("...") else "\n        ..."))
    assert "in_: list[int]" in repair_stub_line(bad[0])
    assert "channel_axis: int = ..." in repair_stub_line(bad[1])
    assert repair_stub_line(bad[2]) == bad[2]


def test_stub_repair_unshadows_builtin_bool() -> None:
    text = "class P:\n    def parse(self) -> bool: ...\n    def __bool__(self) -> bool: ...\nbool: DataType\n"
    fixed = repair_stub_text(text)
    assert "def parse(self) -> builtins.bool" in fixed
    assert "def __bool__(self) -> builtins.bool" in fixed
    assert "\nbool: DataType" in fixed and fixed.startswith("import builtins\n")


if __name__ == "__main__":  # `make typecheck`: `key` before its mypy run, `passed KEY` after it succeeded
    if sys.argv[1:] == ["key"]:
        print(typecheck_key())
    elif len(sys.argv) == 3 and sys.argv[1] == "passed":
        record_pass(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} key | passed KEY")
