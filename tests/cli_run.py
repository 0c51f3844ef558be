"""``pvt-deploy ARGS`` run in the test's own process, through the console entry point, for the CLI tests."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import pytest

from pvt_deploy.cli import main


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pvt-deploy ARGS``: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), out, err


def reexport_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                     caplog: pytest.LogCaptureFixture, folder: Path) -> list[str]:
    """``pvt-deploy export --model FOLDER`` (an export given as the model): the command its warning says exports
    the model again ('give the model name: ...'), split as a shell would."""
    with caplog.at_level(logging.WARNING, logger="pvt_deploy"):
        code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder))
    assert code == 0, err
    return shlex.split(caplog.text.split("give the model name: ", 1)[1].splitlines()[0])
