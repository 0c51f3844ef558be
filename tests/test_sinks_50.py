"""Session 50 (helper CU): output naming without a listing per file, JSON lines every reader splits alike,
joiners kept inside names, and the longest names with every temporary name they get."""

from __future__ import annotations

import json
from pathlib import Path

from pvt_deploy.io.sinks import JsonlWriter


def test_a_json_line_is_one_line_for_every_reader(tmp_path: Path) -> None:
    """predictions.jsonl wrote U+2028 and U+2029 raw (JSON allows them in a string), where JavaScript's readers
    and log tools end a line, and U+0085, where Python's str.splitlines does: a record with such a name was two
    lines there. They are escaped (and nothing else of the text: é and 中 stay as they are); every line split
    by str.splitlines() is one record. Fails before."""
    records = [{"path": "a\u2028b.jpg", "names": ["x\u2029y", "nel\x85line"]}, {"path": "café 中.jpg", "frame": 1},
               {"path": "caf\udce9.jpg"}]
    with JsonlWriter(tmp_path / "predictions.jsonl") as writer:
        for record in records:
            writer.write(record)
    text = (tmp_path / "predictions.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line) for line in text.splitlines()] == records
    assert "\\u2028" in text and "\\u2029" in text and "\\u0085" in text and "café 中" in text
