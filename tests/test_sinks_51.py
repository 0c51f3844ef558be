"""Session 51 (helper DI): the writers' leftovers: Result.save_crop named and put its crops in place as infer's
writers do."""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
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


def _policy_after_svt_opens() -> int:
    """The scheduling policy of a thread that opened SVT-AV1's encoder by PyAV alone."""
    import av

    ctx = av.CodecContext.create("libsvtav1", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
    ctx.time_base = Fraction(1, 24)
    ctx.open()
    return os.sched_getscheduler(0)


def test_a_crop_named_by_fixed_names_says_the_file_is_there_instead_of_asking_for_ever(tmp_path: Path) -> None:
    """Since 24cd2d8 put crops in place by write_named (a rename that replaces nothing, the namer asked again where
    the name is taken), a namer of fixed names (each crop 'folder/stem.jpg', which replaced the file there before)
    was asked again for the same taken name for ever: save_crop of two boxes of one class never returned. The
    FileExistsError is raised, the file there kept and no temporary file left; fails before (a fourth ask)."""
    asked: list[Path] = []

    def fixed(folder: Path, stem: str, suffix: str) -> Path:
        asked.append(folder / f"{stem}{suffix}")
        assert len(asked) <= 3, "asked for ever for the same taken name"
        return asked[-1]

    with pytest.raises(FileExistsError):
        _crowd(2).save_crop(tmp_path, "im.jpg", namer=fixed)
    assert asked == [tmp_path / "person" / "im.jpg"] * 3  # the second crop's, asked again once
    assert [p.name for p in (tmp_path / "person").iterdir()] == ["im.jpg"]  # the first crop, no temporary file
    first = cv2.imread(str(tmp_path / "person" / "im.jpg"))
    assert first is not None and first.shape == (3, 4, 3)


def test_an_av1_video_leaves_the_writers_thread_as_it_was(tmp_path: Path) -> None:
    """SVT-AV1, run as root, makes the thread that opens its encoder real-time (SCHED_FIFO) for good (9d3be3e found
    it making a test worker's main thread so): VideoWriter(codec="libsvtav1") left a library user's thread, and all
    it started, real-time. The thread's policy is as it was after resolve_codec's probe, after the writer opens its
    encoder, and after its frames and close; the video decodes to its frames. Each on a thread of its own, so the
    test process keeps its policy whatever happens. Fails before (SCHED_FIFO after the probe)."""
    import av

    from pvt_deploy.io import sinks

    if not hasattr(os, "sched_getscheduler") or os.geteuid() != 0 or "libsvtav1" not in av.codecs_available:
        pytest.skip("needs root and a PyAV with SVT-AV1")
    with ThreadPoolExecutor(1) as alone:  # does SVT-AV1 do it here (root without CAP_SYS_NICE: it cannot)?
        if alone.submit(_policy_after_svt_opens).result() != os.SCHED_FIFO:
            pytest.skip("SVT-AV1 does not make its thread real-time here")

    def write() -> list[int]:
        policies = [os.sched_getscheduler(0)]
        sinks._encoder_opens.cache_clear()  # probed again on this thread (the answers are the same)
        assert sinks.resolve_codec("libsvtav1") == "libsvtav1"
        policies.append(os.sched_getscheduler(0))
        with sinks.VideoWriter(tmp_path / "av1.mkv", 24, (64, 48), "libsvtav1") as writer:
            policies.append(os.sched_getscheduler(0))
            for i in range(6):
                writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
        policies.append(os.sched_getscheduler(0))
        return policies

    policy = os.sched_getscheduler(0)
    with ThreadPoolExecutor(1) as writer_thread:
        assert writer_thread.submit(write).result() == [policy] * 4  # a new thread takes its maker's
    assert os.sched_getscheduler(0) == policy
    with av.open(str(tmp_path / "av1.mkv")) as container:
        greys = [int(frame.to_ndarray(format="gray").mean()) for frame in container.decode(video=0)]
    assert len(greys) == 6 and all(abs(g - 40 * i) <= 8 for i, g in enumerate(greys))


def test_a_video_that_gives_way_to_another_runs_file_says_the_name_it_has(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A video whose name another run took while it was written is put in place under the next free name
    (VideoWriter's next_name), and its log lines said before then (frames of another size, audio left out, a stop)
    named the file it gave way to, the other run's: the user was never told the name the video has. Once in place,
    one line names both; a video that kept its name says nothing more. Fails before (clip_1.mp4 named nowhere)."""
    import logging

    from pvt_deploy.io.sinks import VideoWriter, free_path

    caplog.set_level(logging.WARNING, logger="pvt_deploy")
    ours: set[str] = set()
    target = free_path(tmp_path, "clip", ".mp4", ours)
    # libx264 named: NVENC, auto's first where there is one, refuses 64x48 with a warning of its own
    with VideoWriter(target, 25, (64, 48), "libx264",
                     next_name=lambda: free_path(tmp_path, "clip", ".mp4", ours)) as writer:
        writer.write(np.full((48, 64, 3), 50, np.uint8), 0.0)
        writer.write(np.full((96, 128, 3), 90, np.uint8), 0.04)  # said: 'clip.mp4: frames of 128x96 ...'
        (tmp_path / "clip.mp4").write_bytes(b"another run's")
    assert writer.path == tmp_path / "clip_1.mp4" and (tmp_path / "clip.mp4").read_bytes() == b"another run's"
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and said[0].startswith(f"{tmp_path / 'clip.mp4'}: frames of 128x96")
    assert said[1] == (f"{tmp_path / 'clip.mp4'}: another process wrote a file of that name while this video was "
                       f"written; the video is {tmp_path / 'clip_1.mp4'}")
    caplog.clear()
    with VideoWriter(tmp_path / "kept.mp4", 25, (64, 48), "libx264", next_name=lambda: tmp_path / "never.mp4") as writer:
        writer.write(np.full((48, 64, 3), 50, np.uint8), 0.0)
    assert writer.path == tmp_path / "kept.mp4" and caplog.records == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_1.mp4", "kept.mp4"]
