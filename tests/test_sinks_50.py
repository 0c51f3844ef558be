"""Session 50 (helper CU): output naming without a listing per file, JSON lines every reader splits alike,
joiners kept inside names, and the longest names with every temporary name they get; (helper DB) a video's encoder
chosen for codec="auto" that refuses its size."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import re
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


def test_naming_a_picture_lists_the_folder_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """free_paths listed the whole output folder for every picture (a killed run's temporary files swept, another
    run's looked for): 22-60 ms a picture at 20,000 files, quadratic over an auto-labelling run. Now a name costs
    a look at it: the folder is listed once, for the sweep of the run's first name. Pictures already there keep
    their names and bytes. Fails before (a listing per picture)."""
    for i in range(30):
        (tmp_path / f"photo{i}.jpg").write_bytes(b"theirs")
    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p=".": listed.append(os.fspath(p)) or real(p))
    writer = ImageWriter(tmp_path)
    written = [writer.write(np.full((8, 8, 3), i, np.uint8), f"photo{i % 40}.jpg") for i in range(60)]
    assert listed == [os.fspath(tmp_path)]
    assert len(set(written)) == 60 and all((tmp_path / f"photo{i}.jpg").read_bytes() == b"theirs" for i in range(30))
    assert written[0].name == "photo0_1.jpg" and written[40].name == "photo0_2.jpg" and written[35].name == "photo35.jpg"


def test_a_run_saving_pictures_masks_and_json_lists_its_folder_once(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """ResultWriter's pictures were named from a set of their own (ImageWriter's), its masks and JSON from the
    run's: the folder was listed and swept at the JSON's name and again at the first picture's. One set, one
    listing; the names are as before (the picture, its mask, a picture already there moved on to _1). Fails
    before (two listings)."""
    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.tasks.results import Result

    (tmp_path / "b.png").write_bytes(b"theirs")
    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p=".": listed.append(os.fspath(p)) or real(p))
    with ResultWriter(tmp_path, task="segment", names=["bg", "fg"], save_json=True, mask_pngs=True) as writer:
        for name in ("a.png", "b.png"):
            mask = np.zeros((8, 8), np.uint8)
            mask[2:5, 2:5] = 1
            result = Result("segment", np.full((8, 8, 3), 40, np.uint8), names=["bg", "fg"], mask=mask)
            result.path = name
            writer.write(result)
    assert listed.count(os.fspath(tmp_path)) == 1, listed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_mask.png", "b.png", "b_1.png", "b_1_mask.png",
                                                          "predictions.jsonl"]
    assert (tmp_path / "b.png").read_bytes() == b"theirs"


def test_a_name_taken_while_the_file_was_written_is_not_replaced(tmp_path: Path) -> None:
    """A name free when it was chosen may be another's by the time the file is in place (a second run into the
    folder wrote it meanwhile): the write with next_name puts its file under the next name and leaves the other
    as it is, and no temporary file stays. Before, the rename replaced it."""
    from pvt_deploy.io.sinks import free_path
    from pvt_deploy.utils.files import atomic_write_bytes

    taken: set[str] = set()
    target = free_path(tmp_path, "photo", ".jpg", taken)
    target.write_bytes(b"the other run's")
    atomic_write_bytes(target, b"ours", next_name=lambda: free_path(tmp_path, "photo", ".jpg", taken))
    assert target.read_bytes() == b"the other run's" and (tmp_path / "photo_1.jpg").read_bytes() == b"ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "photo_1.jpg"]


def _write_pictures(folder: str, who: int, count: int, start: multiprocessing.synchronize.Event) -> None:
    writer = ImageWriter(folder)
    start.wait()
    for i in range(count):
        picture = np.full((4, 4, 3), 0, np.uint8)
        picture[0, 0] = (who, i // 256, i % 256)  # PNG: read back exactly
        writer.write(picture, "photo.png")


def test_two_processes_writing_one_name_into_one_folder_replace_nothing(tmp_path: Path) -> None:
    """Two runs into one folder that write pictures of the same names at the same moment: each picture of each
    run is in the folder once, under a name of its own (a rename that replaces nothing takes the next free name
    where the other run was first), none replaced, and no temporary file stays."""
    count = 150
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    runs = [context.Process(target=_write_pictures, args=(str(tmp_path), who, count, start)) for who in (1, 2)]
    for run in runs:
        run.start()
    start.set()
    for run in runs:
        run.join(120)
        assert run.exitcode == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 * count and not [n for n in names if n.startswith(".")]
    found = set()
    for name in names:
        picture = cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR)
        b, g, r = (int(v) for v in picture[0, 0])  # BGR
        found.add((r, g * 256 + b))
    assert found == {(who, i) for who in (1, 2) for i in range(count)}


@pytest.mark.parametrize("how", ["renameat2", "link", "look first"])
def test_a_rename_that_replaces_nothing_on_every_kind_of_file_system(tmp_path: Path, how: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """rename_new: renameat2's RENAME_NOREPLACE where the C library has it; a hard link where it or the file system
    has none (NFS refuses the flag: EINVAL); a look at the name, then a rename, where there are no hard links either
    (FAT: EPERM). Each puts a file under a free name, moves nothing onto a taken one (FileExistsError, both files
    as they were) and raises the error of a rename that fails (a folder not there)."""
    from pvt_deploy.utils import files

    if how == "renameat2" and files._renameat2() is None:
        pytest.skip("no renameat2 in this C library")
    if how != "renameat2":
        def refused(*args: object) -> int:
            import ctypes

            ctypes.set_errno(errno.EINVAL)  # as NFS answers RENAME_NOREPLACE
            return -1

        monkeypatch.setattr(files, "_renameat2", lambda: refused)
    if how == "look first":
        def no_links(src: object, dst: object) -> None:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))  # as FAT answers link()

        monkeypatch.setattr(os, "link", no_links)
    src, free, taken = tmp_path / "src", tmp_path / "free", tmp_path / "taken"
    src.write_bytes(b"new")
    taken.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        files.rename_new(src, taken)
    assert src.read_bytes() == b"new" and taken.read_bytes() == b"theirs"
    files.rename_new(src, free)
    assert free.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["free", "taken"]
    with pytest.raises(FileNotFoundError):
        files.rename_new(tmp_path / "src", tmp_path / "free2")


#: 200 bytes of a CJK letter (4 bytes each in UTF-8): the longest name safe_name gives (MAX_NAME_BYTES)
LONGEST = "\U00020000" * 50


def test_the_longest_names_with_every_suffix_and_temporary_name_are_written(tmp_path: Path) -> None:
    """safe_name gives up to 200 bytes; an output adds ``_<frame>`` (a stream's frame numbers grow long), ``_<N>``
    and its suffix, its temporary file ``.<name>.XXXXXXXX.part<suffix>`` more, and the video's audio remux a
    temporary file of that temporary file. Written for real, twice into one folder (``_1``): pictures (.tiff),
    their class maps, a video with its audio, label files and crops of a frame numbered 10^12, in a class folder
    of 200 bytes, and the JSON; every name fits 255 bytes, every file is there and no temporary one stays. A crop
    is named as its frame's label file is: the video's name is cut to leave its frame number whole, where the
    crops of a long-named video were ``<name>.jpg``, ``<name>_1.jpg``... (save_crop cut the frame off). Fails
    before on the crops."""
    import av
    from test_io_sinks import clip_with_audio

    from pvt_deploy.io.sinks import MAX_NAME_BYTES, safe_name
    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.tasks.results import Boxes, Result

    assert len(safe_name(LONGEST + "\U00020000", "x").encode()) == MAX_NAME_BYTES == len(LONGEST.encode())
    (tmp_path / "src").mkdir()
    video = clip_with_audio(tmp_path / "src" / f"{LONGEST}.mp4", "aac", frames=6)
    names = ["\U00020001" * 50, "b"]
    out = tmp_path / "out"
    for _ in range(2):
        with ResultWriter(out, task="detect", names=names, save=True, save_txt=True, save_crop=True,
                          save_json=True, fps=25) as writer:
            for i in range(3):
                boxes = Boxes(np.array([[2, 2, 30, 30], [10, 5, 40, 40]], np.float32), np.array([0.9, 0.8], np.float32),
                              np.array([0, 1]), names, (48, 64))
                r = Result("detect", np.full((48, 64, 3), 30 * i, np.uint8), names=names, boxes=boxes)
                r.path, r.frame, r.timestamp = str(video), 10**12 + i, i / 25
                writer.write(r)
        with ResultWriter(out, task="segment", names=names, save=True, mask_pngs=True) as writer:
            r = Result("segment", np.full((48, 64, 3), 90, np.uint8), names=names,
                       mask=np.eye(48, 64, dtype=np.uint8))
            r.path = str(tmp_path / f"{LONGEST}.tiff")
            writer.write(r)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert max(len(os.fsencode(part)) for f in files for part in f.parts) <= 255
    assert not [f for f in files if f.name.startswith(".") or f.name.endswith(".part")], files
    for n in ("", "_1"):
        assert Path(f"{LONGEST}{n}.mp4") in files and Path(f"{LONGEST}{n}.tiff") in files
        frames = {f"{LONGEST[:46]}_{10**12 + i}" for i in range(3)}  # 184 bytes of the name, 14 of its frame
        assert {f.stem for f in files if f.parts[0] == f"labels{n}"} == frames
        assert {f.stem for f in files if f.parts[:2] == (f"crops{n}", names[0])} == frames
        assert Path(f"predictions{n}.jsonl") in files and Path(f"predictions_coco{n}.json") in files
    assert Path(f"{LONGEST}_1_mask.png") in files and Path(f"{LONGEST}_mask.png") in files
    with av.open(str(out / f"{LONGEST}_1.mp4")) as container:
        assert len(container.streams.audio) == 1 and sum(1 for _ in container.decode(video=0)) == 3
    picture = cv2.imread(str(out / f"{LONGEST}_1.tiff"), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape == (48, 64, 3)


def test_a_run_started_at_the_same_moment_keeps_its_json_lines_to_itself(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs into one folder that chose their names at the same moment both found predictions.jsonl free, and
    the second opened predictions.jsonl.part over the first's, its lines lost. A run makes its .part as a new file
    or takes the next _N (with its labels_N/ and the COCO file's name): here another run makes its .part just
    after this one chose the name. The other's file stays as it was; this run writes predictions_1.jsonl, its
    labels into labels_1/, and leaves no labels/ of its own. Fails before (the other's lines replaced)."""
    from pvt_deploy.io import sinks
    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.tasks.results import Boxes, Result

    real = sinks.free_paths
    other = tmp_path / "predictions.jsonl.part"

    def chosen_as_another_run_starts(*args: object, **kwargs: object) -> list[Path]:
        names = real(*args, **kwargs)  # type: ignore[arg-type]
        if not other.exists():
            other.write_text('{"frame":0}\n')  # the other run's first line, a moment after this run chose the name
        return names

    monkeypatch.setattr(sinks, "free_paths", chosen_as_another_run_starts)
    names = ["cat"]
    with ResultWriter(tmp_path, task="detect", names=names, save=False, save_json=True, save_txt=True) as writer:
        boxes = Boxes(np.array([[2, 2, 30, 30]], np.float32), np.array([0.9], np.float32), np.array([0]), names,
                      (48, 64))
        r = Result("detect", np.zeros((48, 64, 3), np.uint8), names=names, boxes=boxes)
        r.path = "cat.jpg"
        writer.write(r)
    assert other.read_text() == '{"frame":0}\n'
    assert [json.loads(line)["source"] for line in (tmp_path / "predictions_1.jsonl").read_text().splitlines()] == [
        "cat.jpg"]
    assert (tmp_path / "predictions_coco_1.json").is_file() and not (tmp_path / "predictions_coco.json").exists()
    assert [p.name for p in (tmp_path / "labels_1").iterdir()] == ["cat.txt"] and not (tmp_path / "labels").exists()


def test_an_encoder_chosen_for_auto_that_refuses_the_size_gives_way_to_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """codec="auto" takes h264_nvenc where it opens for 256x256 (resolve_codec, doctor's probe), but NVENC's sizes
    are its GPU's, and a video it then refused stopped the run ('the h264_nvenc encoder cannot be opened for frames
    of ...'), infer having no --codec to choose another. The writer goes on to the next of _AUTO_H264 that opens at
    the size (libx264), with one warning naming NVENC and the size. NVENC here: the real encoder, said to open by a
    stand-in probe, at 8192x64, wider than NVENC's H.264 takes on any GPU (and it has no driver here). A run
    through the pipeline writes its video too; an encoder named stays refused in one line, as do sizes none takes.
    Fails before (the InputError)."""
    import av
    from test_pipeline import FakeBackend, _model
    from test_sinks_49 import _WideSource

    from pvt_deploy.errors import InputError
    from pvt_deploy.io import sinks

    probe = sinks._encoder_opens
    # NVENC opens for 256x256; libopenh264 (not in PyAV's wheels) does not, wherever it is
    opens = {"h264_nvenc": True, "libopenh264": False}
    monkeypatch.setattr(sinks, "_encoder_opens", lambda name: opens.get(name, probe(name)))
    assert sinks.resolve_codec("auto") == "h264_nvenc"
    out = tmp_path / "wide.mp4"
    with caplog.at_level(logging.WARNING, logger="pvt_deploy"), sinks.VideoWriter(out, 10, (8192, 64)) as writer:
        for i in range(3):
            writer.write(np.full((64, 8192, 3), 60 * i, np.uint8), i / 10)
    assert writer.codec == "libx264" and writer.close() == out
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and re.fullmatch(rf"{re.escape(str(out))}: the h264_nvenc encoder cannot be opened for "
                                           r"frames of 8192x64 \(.+\); written with libx264 instead", said[0]), said
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [f.shape for f in frames] == [(64, 8192, 3)] * 3
    assert [round(float(f.mean())) for f in frames] == pytest.approx([0, 60, 120], abs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["wide.mp4"]

    run = tmp_path / "run"
    for _ in _model(FakeBackend()).predict(_WideSource((8192, 64)), stream=True, save=True, save_dir=run):
        pass
    (video,) = run.glob("*.mp4")
    with av.open(str(video)) as container:
        assert [(f.width, f.height) for f in container.decode(video=0)] == [(8192, 64)] * 3

    with pytest.raises(InputError, match=r"cannot write .*named\.mp4: the h264_nvenc encoder cannot be opened for "
                                         r"frames of 8192x64 \("):
        sinks.VideoWriter(tmp_path / "named.mp4", 10, (8192, 64), "h264_nvenc")
    with pytest.raises(InputError, match=r"cannot write .*huge\.mp4: the h264_nvenc and libx264 encoders cannot be "
                                         r"opened for frames of 20000x64 \(h264_nvenc: .+; libx264: .+\)"):
        sinks.VideoWriter(tmp_path / "huge.mp4", 10, (20000, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "wide.mp4"]
