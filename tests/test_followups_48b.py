"""Follow-ups of session 48, second set: a count said in the plural for one; weights='official' given with a
model file; a video whose display matrix mirrors its frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from cli_run import run
from test_runtime_artifacts import cached_export

from pvt_deploy import Model
from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import open_source
from pvt_deploy.models import create_model


@pytest.fixture(scope="module")
def cls_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    m = Model(cached_export(tmp_path_factory, "cls"))
    yield m  # type: ignore[misc]
    m.close()


def test_a_list_of_unreadable_pictures_counts_them_in_number(cls_model: Model, tmp_path: Path) -> None:
    """A list of one picture that cannot be read said 'no images could be read from 1 images (1 unreadable
    images skipped)': the list's name and the skipped count are said with utils.count_of, singular for one."""
    broken = [tmp_path / "a.jpg", tmp_path / "b.png"]
    for path in broken:
        path.write_bytes(b"not a picture")
    with pytest.raises(InputError) as one:
        cls_model.predict([str(broken[0])])
    assert str(one.value) == "no images could be read from 1 image (1 unreadable image skipped)"
    with pytest.raises(InputError) as two:
        cls_model.predict([str(p) for p in broken])
    assert str(two.value) == "no images could be read from 2 images (2 unreadable images skipped)"


def test_official_weights_with_a_model_file_say_what_export_says(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    """``Model("ckpt.pth", weights="official")`` (and infer's --weights official) said only that weights do not
    apply to a model file, where export says, as README's Models does, that the official weights are a zoo
    model's and to pass the checkpoint file or its URL: the same words, from zoo.official_weights, for a
    checkpoint file and a checkpoint URL; other weights with a model file are refused as before."""
    ckpt = tmp_path / "ckpt.pth"
    torch.save({}, ckpt)
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"")
    for model in (str(ckpt), "https://example.com/weights/ckpt.pth"):
        with pytest.raises(InputError) as e:
            Model(model, weights="official")
        assert str(e.value) == (f"weights='official': the official weights are a zoo model's; the model {model} is "
                                "not a zoo name (pass the checkpoint file or its URL)")
    said = []
    for command in (["infer", str(photo)], ["export"]):
        code, out, err = run(monkeypatch, capsys, *command, "--model", str(ckpt), "--weights", "official",
                             "-o", str(tmp_path / "out"))
        assert code == 2 and not out and len(err.strip().splitlines()) == 1, (code, out, err)
        said.append(err.strip())
    assert said[0] == said[1] == (f"error: --weights official: the official weights are a zoo model's; the model "
                                  f"{ckpt} is not a zoo name (pass the checkpoint file or its URL)")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=f"^weights= does not apply to {ckpt}: a model file runs with its own weights$"):
        Model(ckpt, weights=ckpt)
    # create_model, what the Python API builds a checkpoint with, says export's words too (it said 'does not apply')
    with pytest.raises(InputError) as e:
        create_model(str(ckpt), weights="official")
    assert str(e.value) == (f"weights='official': the official weights are a zoo model's; the model {ckpt} is "
                            "not a zoo name (pass the checkpoint file or its URL)")


def oriented_clip(path: Path, degrees: int, hflip: bool, vflip: bool) -> Path:
    """A 2-frame H.264 mp4, 64x32, whose display matrix turns ``degrees`` counter-clockwise and then mirrors, as a
    phone writes one (a front camera's is mirrored); its picture (a white left band, a grey top band) differs in
    each of the eight orientations."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25), options={"crf": "18", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for i in range(2):
            image = np.zeros((32, 64, 3), np.uint8)
            image[:, :16], image[:8, 16:] = 255, 128
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def autorotated(frame: av.VideoFrame) -> np.ndarray:
    """``frame`` (decoded, its display matrix on it) shown as FFmpeg's autorotate shows it: the transpose, hflip and
    vflip filters its ffmpeg and ffplay insert for the matrix's angle and signs, run by FFmpeg here (on the frame
    converted to RGB first, as the reader converts it)."""
    data = frame.side_data.get("DISPLAYMATRIX")  # none written for no turn and no mirror
    m = np.frombuffer(bytes(data), np.int32, count=9) if data is not None else np.array([1, 0, 0, 0, 1, 0, 0, 0, 1])
    theta = -round(frame.rotation)
    theta -= 360 * np.floor(theta / 360 + 0.9 / 360)
    filters: list[tuple[str, str | None]] = []
    if abs(theta - 90) < 1:
        filters = [("transpose", "cclock_flip" if m[3] > 0 else "clock")]
    elif abs(theta - 180) < 1:
        filters = [(name, None) for name, negative in (("hflip", m[0] < 0), ("vflip", m[4] < 0)) if negative]
    elif abs(theta - 270) < 1:
        filters = [("transpose", "clock_flip" if m[3] < 0 else "cclock")]
    elif m[4] < 0:
        filters = [("vflip", None)]
    rgb = frame.reformat(format="rgb24")
    graph = av.filter.Graph()
    last = graph.add_buffer(width=rgb.width, height=rgb.height, format="rgb24", time_base=Fraction(1, 25))
    for name, args in filters:
        node = graph.add(name, args)
        last.link_to(node)
        last = node
    last.link_to(graph.add("buffersink"))
    graph.configure()
    graph.push(rgb)
    return graph.pull().to_ndarray()


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize("flip", ["none", "hflip", "vflip"])
def test_a_mirrored_display_matrix_is_shown_as_ffmpeg_shows_it(tmp_path: Path, degrees: int, flip: str) -> None:
    """A phone's front camera writes a mirrored display matrix: PyAV's frame.rotation is its angle alone (-180 for
    a left-right mirror), and the frame was turned upside down where it is mirrored. Each of the eight
    orientations (four turns, each mirrored or not; a vertical mirror is a turn and a horizontal one) is the
    picture FFmpeg's autorotate makes of the same decoded frame, exactly, and size says its shape."""
    path = oriented_clip(tmp_path / "clip.mp4", degrees, flip == "hflip", flip == "vflip")
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0))
        raw, expected = decoded.to_ndarray(format="rgb24"), autorotated(decoded)
    with open_source(path) as source:
        size = source.size
        frame = next(iter(source))
    assert np.array_equal(frame.image, expected) and frame.image.flags.c_contiguous
    assert size == (expected.shape[1], expected.shape[0])  # width, height
    if (degrees, flip) == (0, "hflip"):  # a front camera's selfie: mirrored, not turned upside down
        assert np.array_equal(frame.image, raw[:, ::-1]) and not np.array_equal(frame.image, raw[::-1, ::-1])
