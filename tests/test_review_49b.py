"""Session 49's export, val and doctor changes reviewed (helper CL): faults found in them and fixed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from cli_run import run


def test_a_static_graphs_batches_hold_each_picture_once(tmp_path: Path) -> None:
    """make_batches (4917080) preprocessed every picture on its own and kept them all, then stacked each static
    group into a new array: at batch 4, 9 pictures were held twice over (the 9 singles and the 12 rows of the
    batches), where the export's memory check weighs the 12 rows (_preprocessed). Each picture is written into its
    group's array as it is preprocessed: the peak is the batches and one picture more. The batches are still the
    groups preprocessed whole, bit for bit, the last one filled with the first pictures (of the first group, or of
    its own where the pictures are fewer than the batch)."""
    import gc
    import tracemalloc

    import cv2

    from pvt_deploy.export.calibration import make_batches
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    rng = np.random.default_rng(0)
    paths = []
    for i in range(9):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), rng.integers(0, 255, (30 + 7 * i, 40, 3), np.uint8))
        paths.append(tmp_path / f"p{i}.png")
    spec = preprocess_spec("detect", (256, 256), dynamic=False, mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
    pre = Preprocessor(spec, dynamic=False)
    one = 12 * 256 * 256  # a picture preprocessed: float32 RGB at the graph's size
    make_batches(paths[:1], pre, batch=4)  # imports and first-use allocations, outside the measure
    gc.collect()
    tracemalloc.start()
    try:
        batches = make_batches(paths, pre, batch=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    held = sum(b.images.nbytes for b in batches)
    assert held == 12 * one  # 3 batches of 4
    assert peak < held + 2 * one, f"peak {peak / one:.1f} pictures, the batches {held / one:.0f}"

    decoded = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    for count, batch in ((9, 4), (2, 4), (3, 3)):
        got = make_batches(paths[:count], pre, batch=batch)
        groups = [list(range(i, min(i + batch, count))) for i in range(0, count, batch)]
        assert len(got) == len(groups)
        for b, group in zip(got, groups, strict=True):
            filled = group + [k % count for k in range(len(group), batch)]
            want, metas = pre.batch([decoded[k] for k in filled])
            assert b.images.dtype == want.dtype and b.images.shape == want.shape
            assert b.images.tobytes() == want.tobytes()
            assert b.metas == metas[:len(group)]
            assert b.names == [paths[k].name for k in group]



def test_an_output_folder_that_is_a_loop_of_links_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export -o out`` where ``out`` itself is a loop of links (out -> back -> out): cd6dac1 says such a link on
    the way to ``-o out/x``, but its probe of the parent of the path given let ``out`` itself pass, and its real
    path is itself: the swap set the link aside as an old export (.out.pvt-old-...), left it there, and made a
    folder in its place, exit 0. Refused before the model loads, nothing made, as infer refuses the same ``-o``."""
    import pvt_deploy.export.onnx as export_onnx

    (tmp_path / "out").symlink_to("back")
    (tmp_path / "back").symlink_to("out")
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **k: pytest.fail("the model was loaded"))
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                            "--no-parity", "-o", str(tmp_path / "out"))
    assert (code, stdout) == (2, "")
    assert err == (f"error: cannot write to output folder {tmp_path / 'out'}: {tmp_path / 'out'} is a link that "
                   f"leads nowhere ({os.strerror(errno.ELOOP)})\n")
    assert sorted((p.name, os.readlink(p)) for p in tmp_path.iterdir()) == [("back", "out"), ("out", "back")]


def test_an_output_link_in_a_folder_the_export_need_not_write_to_is_taken(tmp_path: Path) -> None:
    """``export -o locked/link``, ``link`` leading to a folder that can be written, in a folder ``locked`` that
    cannot: the export writes beside the real folder only (85e5720 measures it there), but cd6dac1, to find a link
    that leads nowhere on the path given, probed the parent given by writing a file in it: 'cannot write to output
    folder locked/link: Permission denied', exit 2. That parent is looked at for such links only; the real folder's
    is still probed: a link to a folder in ``locked`` is refused. Run as another process, without the capability
    that lets root write anywhere (setpriv), as root cannot be kept out of a folder otherwise."""
    import shutil
    import subprocess
    import sys

    locked, data = tmp_path / "locked", tmp_path / "data"
    locked.mkdir()
    data.mkdir()
    (data / "m").mkdir()  # (a link to what is not there is refused as such: the links lead to folders)
    (locked / "m").mkdir()
    (locked / "link").symlink_to(data / "m")
    (data / "link").symlink_to(locked / "m")
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")  # exit 2 once the output is checked: no model built
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no folder here refuses root's writes")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    locked.chmod(0o555)
    try:
        probe = subprocess.run([*prefix, "sh", "-c", f"touch '{locked}/probe'"], capture_output=True, text=True)
        if probe.returncode == 0:
            pytest.skip("this process cannot be kept from writing to a folder (setpriv dropped no capability)")
        cli = [*prefix, sys.executable, "-m", "pvt_deploy", "export", "--model", str(tmp_path / "x.pth"), "-o"]
        done = subprocess.run([*cli, str(locked / "link")], capture_output=True, text=True, timeout=300)
        assert (done.returncode, done.stderr) == (2, f"error: {tmp_path / 'x.pth'}: corrupt or truncated checkpoint "
                                                     "(neither a PyTorch zip archive nor a pickle)\n")
        done = subprocess.run([*cli, str(data / "link")], capture_output=True, text=True, timeout=300)
        assert (done.returncode, done.stderr) == (2, f"error: cannot write to output folder {data / 'link'}: "
                                                     "Permission denied\n")
    finally:
        locked.chmod(0o755)
    assert sorted(p.name for p in locked.iterdir()) == ["link", "m"] == sorted(p.name for p in data.iterdir())
    assert [list((folder / "m").iterdir()) for folder in (locked, data)] == [[], []]
