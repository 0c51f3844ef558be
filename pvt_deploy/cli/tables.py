"""Printing rich tables without losing their contents on a narrow terminal, and the commands' progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["print_table", "transient_bars"]


@contextlib.contextmanager
def transient_bars(console: Any) -> Iterator[Any]:
    """A transient Rich display of tasks, each a spinner, its description, a bar, done of total and the time taken
    (export's phases, bench's and check's backends): the ``rich.progress.Progress``. None where ``console`` is no
    terminal (a log, a pipe): a transient display shows nothing there, and stopping it wrote an empty line, which
    stood above the error or the summary."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        yield bar


def print_table(console: Any, table: Any) -> None:
    """Print ``table`` on ``console`` without cutting a word of any cell.

    Rich fits a table to the console by wrapping cells and, where a word still does not fit, cutting
    it to "…" (or cropping the last columns): on a 40- or 60-column terminal every file name read
    ``model.on…`` and numbers lost digits. Here no column gets narrower than its longest word (its
    whole cells, where it does not wrap); a table that cannot fit the terminal so is laid out as
    narrow as that allows, wider than the terminal, which wraps its lines. A table that fits is
    printed exactly as before.
    """
    from rich.measure import Measurement

    options = console.options.update_width(10_000)
    need = Measurement.get(console, options, table)
    if need.minimum <= console.width:
        console.print(table)
        return
    for column in table.columns:
        cells = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
        column.min_width = max([column.min_width or 0, *(m.maximum if column.no_wrap else m.minimum for m in cells)])
    # rich's measured minimum can be a few columns short of the layout it makes at that width
    width = next((w for w in range(need.minimum, need.maximum) if _widest_line(console, table, w) <= w), need.maximum)
    saved = console.width
    console.width = width  # print(width=) would be capped at the console's width
    try:
        console.print(table)
    finally:
        console.width = saved


def _widest_line(console: Any, table: Any, width: int) -> int:
    """The longest line of ``table`` laid out for ``width`` columns, before the console crops it."""
    from rich.segment import Segment

    lines = Segment.split_lines(console.render(table, console.options.update_width(width)))
    return max((Segment.get_line_length(line) for line in lines), default=0)
