"""Session 51 (helper DI): a folder of any name the file system takes is replaced (export/swap.py's hidden names)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pvt_deploy.export.swap import SwappedFolder, new_hidden

#: 255 bytes in UTF-8, of letters of two bytes but the last: a cut must fall between letters
LONGEST = "\u00e9" * 127 + "x"


def _ours(old: Path) -> Callable[[str], bool]:
    return lambda name: name == "manifest.json"


def test_a_folder_of_the_longest_name_is_replaced_and_a_killed_swap_of_it_given_back(tmp_path: Path) -> None:
    """The hidden folders a swap makes beside a folder are named after it, some 31 bytes longer
    (``.NAME.pvt-new-HOST-PID-XXXX``, ``-old-``), so a folder named past 224 bytes could not be replaced (export
    -o refused it: 'File name too long'). Past that the name in them is cut, at a letter, with a digest of the
    whole name after it: every hidden name fits 255 bytes with the longest PID, is the same for every run (a later
    run's sweep finds what a killed one left) and is another for another long name; a name that fits is kept as it
    was. An old folder a swap killed midway set aside is given back, then replaced with the user's file carried
    over, nothing hidden left. Fails before (the hidden name too long to make)."""
    parent = tmp_path / "exports"
    parent.mkdir()
    folder = SwappedFolder(parent / LONGEST, "the folder", _ours)
    other = SwappedFolder(parent / (LONGEST[:-1] + "y"), "the other", _ours)
    for prefix in (folder.staging_prefix, folder.aside_prefix):
        assert len(os.fsencode(prefix + "0badf00d-4194304-abcd")) <= 255
        assert prefix.startswith("." + LONGEST[:80]) and not prefix.startswith("." + LONGEST)
    assert folder.aside_prefix == SwappedFolder(parent / LONGEST, "again", _ours).aside_prefix
    assert other.aside_prefix != folder.aside_prefix
    assert SwappedFolder(parent / ("m" * 224), "short", _ours).staging_prefix == "." + "m" * 224 + ".pvt-new-"
    assert folder.unwritable() is None

    aside = new_hidden(parent, folder.aside_prefix, create=True)  # a swap killed after it set the old folder aside
    (aside / "manifest.json").write_text("old")
    (aside / "notes.txt").write_text("the user's")
    with folder.replacing() as staging:
        assert staging.parent == parent and staging.name.startswith(folder.staging_prefix)
        assert (folder.target / "manifest.json").read_text() == "old"  # given back first
        (staging / "manifest.json").write_text("new")
    assert sorted(p.name for p in parent.iterdir()) == [LONGEST]
    assert {p.name: p.read_text() for p in folder.target.iterdir()} == {"manifest.json": "new", "notes.txt": "the user's"}
