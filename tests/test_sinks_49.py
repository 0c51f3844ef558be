"""Writers (io/sinks.py), reviewed afresh in session 49: real encodes, real kills, decoded back with PyAV."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pvt_deploy.io.sinks import free_path
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
