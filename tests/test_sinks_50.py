"""Session 50 (helper CU): output naming without a listing per file, JSON lines every reader splits alike,
joiners kept inside names, and the longest names with every temporary name they get."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pvt_deploy.io.sinks import ImageWriter, JsonlWriter


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


@pytest.mark.parametrize(("name", "saved"), [
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.jpg", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.jpg"),  # Persian: a ZWNJ
    ("\u0915\u094d\u200d\u0937.png", "\u0915\u094d\u200d\u0937.png"),  # Devanagari: virama + ZWJ inside a word
    ("a\u200c\u200db.jpg", "a\u200c\u200db.jpg"),
    ("a\u200d b.jpg", "a_b.jpg"),  # a joiner before what goes joins nothing: it goes with it
    ("ab\u200d.jpg", "ab.jpg"), ("\u200dab.jpg", "ab.jpg"), ("a\u200d-b.jpg", "a-b.jpg"),
])
def test_a_joiner_inside_a_word_stays_in_its_output_name(tmp_path: Path, name: str, saved: str) -> None:
    """safe_name made the zero-width non-joiner and joiner (U+200C, U+200D) '_': Persian writes 'می\u200cخواهم'
    with one, Indic scripts make conjuncts with them, and the saved picture was 'می_خواهم.jpg'. Between a
    word's characters they stay, as a letter's combining marks do; one that joins nothing goes. The picture
    decodes under the name given. Fails before on the first three and the last."""
    path = ImageWriter(tmp_path).write(np.full((16, 16, 3), 90, np.uint8), name)
    assert path.name == saved and sorted(p.name for p in tmp_path.iterdir()) == [saved]
    picture = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape == (16, 16, 3)
