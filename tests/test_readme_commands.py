"""README's commands name commands and options that exist.

README.md is a user's first contact, and its examples are copied as they are written: an option renamed
or dropped since, or an option given to the wrong command, would fail them with Click's "No such option". Every ``pvt-deploy <command> ...`` written in README (its bash blocks, its inline code
and the ``docker run ... pvt-deploy`` lines) and every example in a command's ``--help`` is parsed and
held against the Typer app's commands and their options; README's ``make <target>`` against the Makefile
and its ``python benchmarks/<script>.py --option`` against the script's source. No model runs: the CLI's
commands are introspected (their modules import their heavy libraries inside the command functions).
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from pvt_deploy.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# the root's own options (``pvt-deploy -v export ...``, ``pvt-deploy --version``)
_ROOT_OPTIONS = {"-v", "--verbose", "--version", "-h", "--help"}


def _fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _bash_commands(block: str) -> list[str]:
    """The commands of a bash block, a line that starts with ``[`` (options laid out under the command,
    as README's TensorRT block does) joined to the one before; comments dropped."""
    commands: list[str] = []
    for line in block.splitlines():
        code = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
        if not code or code.startswith("#"):
            continue
        if code.startswith("[") and commands:
            commands[-1] += " " + code
        else:
            commands.append(code)
    return commands


def _prose(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def readme_commands(text: str) -> list[str]:
    """Every ``pvt-deploy ...`` command README writes: its bash blocks' lines, its inline code spans that
    start with ``pvt-deploy`` (a Docker line's ``pvt-deploy`` is the image, then the command), and those
    that start with a command's name and give it an option (``check --tolerance 2``)."""
    found = [c for block in _fenced(text, "bash") for c in _bash_commands(block)]
    commands = set(_click().commands)
    for span in re.findall(r"`([^`]+)`", _prose(text)):
        words = span.split()
        if words[0] == "pvt-deploy":
            found.append(span)
        elif words[0] in commands and any(w.startswith("-") for w in words[1:]):
            found.append(f"pvt-deploy {span}")
    return [c for c in found if "pvt-deploy" in c.split()]


def _words(command: str) -> list[str]:
    # README's optional parts ([--half]) and alternatives (imgs/|clip.mp4) are kept as words
    command = command.replace("[", " ").replace("]", " ")
    command = command.split(" | ", 1)[0].split(" 2>&1", 1)[0]
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in prose: its words as they stand
        return command.split()


@functools.cache
def _click() -> Any:
    return typer.main.get_command(app)


def _options(command: Any) -> set[str]:
    return {name for p in command.params if p.param_type_name == "option"
            for name in (*p.opts, *p.secondary_opts)}


def problems(command: str) -> list[str]:
    """What in ``command`` (a line as README writes it) the CLI does not have: an unknown command, or an
    option the command (or the root, before the command) does not take. ``[]`` when it all exists."""
    words = _words(command)
    rest = words[words.index("pvt-deploy") + 1:]
    group = _click()
    while rest and rest[0].startswith("-"):  # root options: pvt-deploy -v export ...
        if rest[0] not in _ROOT_OPTIONS:
            return [f"{command!r}: pvt-deploy has no option {rest[0]}"]
        rest = rest[1:]
    if not rest:
        return []
    name, args = rest[0], rest[1:]
    if "=" in name:  # README's own example of a key=value line that pvt-deploy answers (exit 2)
        return []
    sub = group.commands.get(name)
    if sub is None:
        return [f"{command!r}: no command {name!r} (commands: {', '.join(sorted(group.commands))})"]
    known = _options(sub)
    out = []
    for word in args:
        if not word.startswith("-") or word == "-" or re.fullmatch(r"-\d.*", word):
            continue
        option = word.split("=", 1)[0]
        if option not in known:
            out.append(f"{command!r}: pvt-deploy {name} has no option {option}")
    return out


def help_examples() -> list[str]:
    """The ``Examples:`` lines of each command's help (what ``pvt-deploy <command> --help`` shows)."""
    found = []
    for sub in _click().commands.values():
        doc = sub.help or ""
        if "Examples:" in doc:
            found += [line.strip() for line in doc.split("Examples:", 1)[1].splitlines()
                      if line.strip().startswith("pvt-deploy ")]
    return found


def test_readme_and_help_examples_name_options_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    commands = readme_commands(text)
    examples = help_examples()
    # the parse found README's examples (a change of README's layout must not leave this test checking nothing)
    assert len(commands) >= 30 and len(examples) >= 6
    assert any("--min-shape" in c for c in commands)  # the TensorRT block's option lines, joined to their command
    found = [p for c in commands + examples for p in problems(c)]
    assert found == []


# other tools' flags that README quotes (docker run, pip, gunicorn, mypy)
_OTHER_TOOLS = {"--rm", "--gpus", "--init", "--runtime", "--index-url", "--no-deps", "--preload", "--strict"}


def unknown_options(text: str) -> set[str]:
    """The ``--options`` README names anywhere (prose too: ``--calib-size``, ``--int8-cpu static``) that are
    no option of a pvt-deploy command, of a benchmark script, nor another tool's spelling that pvt-deploy
    answers with its own (``--fp16``: "Did you mean --half?")."""
    from pvt_deploy.cli.spelling import _OPTIONS as foreign

    known = set(_ROOT_OPTIONS) | _OTHER_TOOLS | {name for table in foreign.values() for name in table}
    for command in _click().commands.values():
        known |= _options(command)
    scripts = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "benchmarks").glob("*.py"))
    named = set(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)(?![\w/-])", text))  # not --min/opt/max-shape's --min
    return {o for o in named - known if f'"{o}"' not in scripts}


def test_every_option_readme_names_exists() -> None:
    text = README.read_text(encoding="utf-8")
    assert {"--calib-size", "--int8-cpu", "--roof"} <= set(re.findall(r"--[\w-]+", text))
    assert unknown_options(text) == set()


@pytest.mark.parametrize(("line", "wrong"), [
    ("pvt-deploy infer street.mp4 --model exports/pvt_small --conf-made-up 0.3", "--conf-made-up"),
    ("pvt-deploy export --model pvt_small --half --made-up", "--made-up"),
    ("pvt-deploy infer clip.mp4 --half", "--half"),  # export's option, not infer's (answered: --precision fp16)
    ("pvt-deploy predict clip.mp4", "'predict'"),
    ("pvt-deploy --made-up models", "--made-up"),
])
def test_a_made_up_option_or_command_is_found(line: str, wrong: str) -> None:
    found = problems(line)
    assert len(found) == 1 and wrong in found[0]
    readme = f"intro\n\n```bash\n{line}    # an example\n```\n"
    assert readme_commands(readme) == [line]
    if "made-up" in wrong:  # no command of pvt-deploy has it (--half is export's)
        assert unknown_options(readme) == {wrong}


def test_readme_names_make_targets_and_benchmark_options_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w.-]+):", makefile, flags=re.M))
    code = [c for block in _fenced(text, "bash") for c in _bash_commands(block)] + re.findall(r"`([^`]+)`", _prose(text))
    named = {m for c in code for m in re.findall(r"^make ([a-z][\w-]*)", c)}  # `make demo`, not "make sure"
    assert {"demo", "test", "docker"} <= named and named - targets == set()
    sources = {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "benchmarks").glob("*.py")}
    runs = re.findall(r"python (benchmarks/\w+\.py)([^`|]*)", text)
    assert len(runs) >= 8
    for script, args in runs:
        stem = Path(script).stem
        assert stem in sources, script
        for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", args):
            assert f'"{option}"' in sources[stem] or f'"{option}"' in sources["common"], (script, option)
