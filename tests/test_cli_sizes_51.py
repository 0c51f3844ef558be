"""Sizes the CLI prints, in one unit from one place (helper DK, session 51)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from cli_run import run
from test_runtime_artifacts import cached_export


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def test_the_size_of_a_byte_count_is_in_decimal_units() -> None:
    from pvt_deploy.utils import MB, file_size, megabytes

    assert MB == 10**6 and megabytes(137_000_000) == 137.0
    assert [file_size(n) for n in (0, 999, 1000, 123_456, 10**6, 123_456_789, 10**9, 2_400_000_000)] == [
        "0 B", "999 B", "1.0 kB", "123.5 kB", "1.0 MB", "123.5 MB", "1.0 GB", "2.4 GB"]


def test_a_size_that_rounds_to_a_thousand_of_a_unit_is_said_in_the_next() -> None:
    """info said a file of 999,960 bytes was '1000.0 kB' (below 1000 kB, but rounded to it), and 999,950,000 bytes
    '1000.0 MB': 1.0 MB and 1.0 GB, as 1,000,000 bytes and 10^9 are; just below the rounding, as before."""
    from pvt_deploy.cli.info import _size

    assert [_size(n) for n in (999, 999_949, 999_950, 999_999, 999_949_999, 999_950_000, None)] == [
        "999 B", "999.9 kB", "1.0 MB", "1.0 MB", "999.9 MB", "1.0 GB", "-"]


def test_info_and_export_say_the_same_megabytes_of_a_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """export's summary (its MB column) and info's files table (a size with its unit) each turned bytes into MB
    themselves: the same figure of the same file, 10^6 bytes to the MB, as the file is long."""
    from rich.console import Console

    from pvt_deploy.cli.export import summary_table

    size = (cls_export / "model.onnx").stat().st_size
    assert size >= 10**6  # a figure in MB in both
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(summary_table(cls_export))
    (row,) = [line for line in console.export_text().splitlines() if line.startswith("model.onnx ")]
    assert row.split()[2] == f"{size / 10**6:.1f}", row
    code, out, err = run(monkeypatch, capsys, "info", str(cls_export))
    assert code == 0, err
    assert re.search(rf"model\.onnx\s.*\s{re.escape(f'{size / 10**6:.1f}')} MB\s", out), out
