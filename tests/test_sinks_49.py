"""Writers (io/sinks.py), reviewed afresh in session 49: real encodes, real kills, decoded back with PyAV."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from test_io_sinks import clip_with_audio
from test_pipeline import FakeBackend, ListSource, _model

from pvt_deploy.errors import InputError
from pvt_deploy.io.sinks import ImageWriter, VideoWriter, free_path
from pvt_deploy.io.sources import Frame
from pvt_deploy.utils.files import TEMP_GRACE_S

KILLED_IN_THE_REMUX = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_io_sinks import clip_with_audio, frame
from pvt_deploy.io import sinks
tmp = Path(sys.argv[1])
src = clip_with_audio(tmp / "src.mp4", "aac", frames=40)
real, calls = sinks._AudioCopy.copy_until, [0]
def killed_midway(self, out, origin, end, *, last=False):  # the audio written up to each video packet in turn
    calls[0] += 1
    if calls[0] == 20:  # half the video remuxed with its audio: kill -9, the OOM killer, no handler runs
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, out, origin, end, last=last)
sinks._AudioCopy.copy_until = killed_midway
writer = sinks.VideoWriter(tmp / "out" / "clip.mp4", 25, (320, 240), audio_from=src)
for i in range(40):
    writer.write(frame(i, (320, 240)), i / 25)
writer.close()
"""


def test_a_run_killed_while_the_audio_is_added_leaves_nothing_the_next_run_keeps(tmp_path: Path) -> None:
    """``kill -9`` while the audio was remuxed in left, beside the silent video's temporary file, the one of
    the video with its audio, ``.clip.mp4.XXXXXXXX.part.audio.mp4``: no name atomic_path gives, so the next
    run into the folder, which removes the first, kept it for good, hidden, as large as the video. Now it
    is an atomic_path temporary file too (``..clip.mp4.XXXXXXXX.part.mp4.YYYYYYYY.part.mp4``), locked while
    it is written: the next run removes both, and ``clip.mp4`` is its name again. No file ever has the
    final name."""
    out = tmp_path / "out"
    out.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_THE_REMUX, str(tmp_path), str(Path(__file__).parent)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(out.iterdir())
    assert len(left) == 2 and all(p.name.startswith(".") and ".part" in p.name for p in left), left
    assert not (out / "clip.mp4").exists()
    old = max(p.stat().st_mtime for p in left) - TEMP_GRACE_S - 1
    for path in left:
        os.utime(path, (old, old))
    assert free_path(out, "clip", ".mp4", set()).name == "clip.mp4"  # the next run into the folder
    assert sorted(out.iterdir()) == []


def _late_last_frame() -> list[float]:
    """Fifty frames at 30 fps and one 2 s later (a screen recording that sat still, a stream that stalled)."""
    return [k / 30 for k in range(50)] + [50 / 30 + 2.0]


def _short_late_last_frame() -> list[float]:
    """Five frames, the last 2 s after the fourth: so few that x264 gives no packet until it is drained."""
    return [k / 30 for k in range(4)] + [3 / 30 + 2.0]


def _jittery() -> list[float]:
    """A hundred frames 20 to 50 ms apart, as a phone records them."""
    steps = np.random.default_rng(0).uniform(0.02, 0.05, 100)
    return [float(t) for t in np.cumsum(steps) - steps[0]]


@pytest.mark.parametrize("times", [_late_last_frame, _short_late_last_frame, _jittery])
@pytest.mark.parametrize(("suffix", "audio"), [(".mp4", False), (".mov", False), (".mp4", True)])
def test_a_variable_rate_videos_length_reaches_past_its_last_frame(tmp_path: Path, times: Callable[[], list[float]],
                                                                   suffix: str, audio: bool) -> None:
    """mp4 and mov time each frame by the step to the next frame's decode time and the last by its packet's
    length; x264's B-frames space the decode times of a variable-rate video's last frames by one nominal
    frame, so the frames' lengths, which FFmpeg (ffprobe, mpv, PyAV) gives as the video's duration, fell
    short of it: 1.7 s for a video whose last frame is at 3.67 s, 3.597 s for a phone's whose last frame is
    at 3.606. The last packet now lasts to one nominal frame past the last frame, as the file's header says
    (mvhd): the duration is the last frame's time and 1/30 s, with the audio remuxed in too; every frame is
    there at its time. Fails before on all 6 (1.7 s and 3.597 s); the five-frame one (x264 gives no packet before
    it is drained) failed at b0f5674 too, which took the first decode time from write() only."""
    ts = times()
    out = tmp_path / f"out{suffix}"
    src = clip_with_audio(tmp_path / "src.mp4", "aac", frames=40, fps=10) if audio else None
    with VideoWriter(out, 30, (64, 48), audio_from=src) as writer:
        for i, t in enumerate(ts):
            writer.write(np.full((48, 64, 3), i * 10 % 256, np.uint8), t)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        shown = [float(f.pts * f.time_base) for f in container.decode(stream)]
        assert stream.duration is not None and stream.time_base is not None
        length = float(stream.duration * stream.time_base)
        whole = (container.duration or 0) / 1e6
    assert shown == pytest.approx(ts, abs=1e-3)
    assert length == pytest.approx(ts[-1] + 1 / 30, abs=1e-3)
    assert whole >= ts[-1] + 1 / 30 - 1e-3


class _WideSource(ListSource):
    """Three frames of ``size`` (width, height), from memory."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__(3)
        self.size = size

    def _iter_frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            self.produced += 1
            yield Frame(np.full((self.size[1], self.size[0], 3), 20 * i, np.uint8), i, self.spec, i / 10)


@pytest.mark.parametrize("size", [(20000, 64), (64, 20000), (16384, 16384)])
def test_frames_the_encoder_cannot_take_are_one_error_before_any_frame(tmp_path: Path, size: tuple[int, int]) -> None:
    """x264 does not open for frames wider or taller than 16384, nor for 16384x16384 (a panorama, a line-scan
    camera's strip: readable as VP9, FFV1, MJPEG): the encoder was opened at the first frame, so write()
    raised FFmpeg's 'Generic error in an external library' (av.error.ExternalError, no OSError: a traceback
    from infer), and close() raised it again. The writer opens its encoder as it is made: one InputError
    naming the file and the size, no file left; a run stops with it, its folder removed. 16384x64 is
    written. Fails before (ExternalError, ArgumentError)."""
    with pytest.raises(InputError, match=rf"cannot write .*wide\.mp4: the libx264 encoder cannot be opened for "
                                         rf"frames of {size[0]}x{size[1]} \("):
        VideoWriter(tmp_path / "wide.mp4", 10, size, "libx264")
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"frames of {size[0]}x{size[1]}"):
        for _ in _model(FakeBackend()).predict(_WideSource(size), stream=True, save=True, save_dir=out):
            pass
    assert not out.exists()
    with VideoWriter(tmp_path / "long.mp4", 10, (16384, 64), "libx264") as writer:
        writer.write(np.zeros((64, 16384, 3), np.uint8))
    with av.open(str(tmp_path / "long.mp4")) as container:
        assert [(f.width, f.height) for f in container.decode(video=0)] == [(16384, 64)]


@pytest.mark.parametrize(("name", "saved"), [
    ("हिन्दी.jpg", "हिन्दी.jpg"),  # Devanagari: vowel signs (Mc) and a virama (Mn)
    ("தமிழ்.png", "தமிழ்.png"),  # Tamil
    (unicodedata.normalize("NFD", "café.png"), unicodedata.normalize("NFD", "café.png")),  # as macOS names it
    ("naïve résumé.jpg", "naïve_résumé.jpg"),
    ("a (b) .jpg", "a_b.jpg"),  # what a name does not keep still goes
    ("\u0301x.jpg", "x.jpg"),  # a mark that belongs to no letter
])
def test_a_letters_combining_marks_stay_in_its_output_name(tmp_path: Path, name: str, saved: str) -> None:
    """Output names keep letters and digits (safe_name), but Python's \\w is no letter's combining marks, so a
    Hindi picture 'हिन्दी.jpg' was saved as 'ह_न_द.jpg' and a name macOS gave in decomposed form, 'cafe\\u0301',
    as 'cafe': marks that follow a letter are its own and stay. The picture decodes, the name given is the
    file's. Fails before on the first three."""
    writer = ImageWriter(tmp_path)
    path = writer.write(np.full((16, 16, 3), 200, np.uint8), name)
    assert path.name == saved and sorted(p.name for p in tmp_path.iterdir()) == [saved]
    picture = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape == (16, 16, 3)
