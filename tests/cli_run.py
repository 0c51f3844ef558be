"""``pvt-deploy ARGS`` run in the test's own process, through the console entry point, for the CLI tests."""

from __future__ import annotations

import sys

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
