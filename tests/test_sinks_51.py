"""Session 51 (helper DI): the writers' leftovers: Result.save_crop named and put its crops in place as infer's
writers do."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

if TYPE_CHECKING:
    from pvt_deploy.tasks.results import Result


def _crowd(boxes: int) -> Result:
    """A detector's result of ``boxes`` boxes of class 'person' and one of class 'car', on a 64x48 picture whose
    pixels say where they are (a crop decodes to its box's own)."""
    from pvt_deploy.tasks.results import Boxes, Result

    names = ["person", "car"]
    xyxy = np.array([[i % 8, i % 6, i % 8 + 4, i % 6 + 3] for i in range(boxes)] + [[40, 30, 60, 44]], np.float32)
    cls = np.array([0] * boxes + [1])
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[..., 0] = np.arange(64, dtype=np.uint8)[None, :] * 3
    picture[..., 1] = np.arange(48, dtype=np.uint8)[:, None] * 5
    return Result("detect", picture, names=names,
                  boxes=Boxes(xyxy, np.full(len(cls), 0.9, np.float32), cls, names, (48, 64)))


def test_save_crop_lists_a_class_folder_once_and_replaces_no_file_another_run_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Result.save_crop named each crop by free_path with a set of its own: the class folder was listed (the sweep of
    killed writers' temporary files) for every crop, and its 30th crop of one name looked at 30 names. And the crop
    was renamed over its name, where infer's writers put a file in place by a rename that replaces nothing: a name
    another process wrote after this call chose it (a second run into the folder) was replaced. Now one listing per
    class folder, a name looked at about twice a crop, and the other's file stays as it was, the crop under the next
    name. A crop already there keeps its bytes too; every crop decodes to its box. Fails before (30 listings of
    person/, the other's files replaced)."""
    result = _crowd(30)
    person = tmp_path / "person"
    person.mkdir()
    (person / "im.png").write_bytes(b"an earlier run's")
    listed: list[str] = []
    looked = [0]
    real_listdir, real_lexists, real_mkstemp = os.listdir, os.path.lexists, tempfile.mkstemp
    monkeypatch.setattr(os, "listdir", lambda p=".": listed.append(os.fspath(p)) or real_listdir(p))
    monkeypatch.setattr(os.path, "lexists", lambda p: looked.__setitem__(0, looked[0] + 1) or real_lexists(p))
    theirs: list[Path] = []

    def another_run_writes_the_name(*args: object, prefix: str = "", dir: str | Path = "", **kw: object) -> tuple[int, str]:
        # just after a crop's name was chosen (its temporary file is made), another run writes that name, the
        # 5th and the car's: '.<name>.' is atomic_path's prefix
        made = real_mkstemp(*args, prefix=prefix, dir=dir, **kw)  # type: ignore[call-overload]
        if len(theirs) < 2 and (os.fspath(dir) == os.fspath(tmp_path / "car") or prefix == ".im_4.png."):
            theirs.append(Path(dir) / prefix[1:-1])
            theirs[-1].write_bytes(b"another run's")
        return made  # type: ignore[no-any-return]

    monkeypatch.setattr(tempfile, "mkstemp", another_run_writes_the_name)
    written = result.save_crop(tmp_path, "im.png")
    monkeypatch.undo()

    assert sorted(listed) == [os.fspath(tmp_path / "car"), os.fspath(person)], listed
    assert looked[0] <= 2 * 31 + 4
    assert theirs == [person / "im_4.png", tmp_path / "car" / "im.png"]
    assert all(p.read_bytes() == b"another run's" for p in theirs)
    assert (person / "im.png").read_bytes() == b"an earlier run's"
    assert [p.name for p in written] == [f"im_{n}.png" for n in (1, 2, 3, 5, *range(6, 32))] + ["im_1.png"]
    assert [p.parent.name for p in written] == ["person"] * 30 + ["car"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["person", "car", "im.png", "im.png", "im_4.png", *(p.name for p in written)])
    assert result.boxes is not None
    boxes = result.boxes.xyxy.astype(int).tolist()
    for path, box in zip(written, boxes, strict=True):
        crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert crop is not None and crop.shape[:2] == (box[3] - box[1], box[2] - box[0])
        assert (int(crop[0, 0, 2]), int(crop[0, 0, 1])) == (3 * box[0], 5 * box[1])  # BGR
