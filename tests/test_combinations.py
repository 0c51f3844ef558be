"""Features that each work alone, tested where they meet (backend x threads, source x writer, ...).

Found by running ``pvt-deploy infer`` and the Python API over a matrix of backends (PyTorch, ONNX
Runtime FP32/FP16/INT8, a lone ``.onnx``, Triton over HTTP and gRPC), tasks, sources (images, folders,
globs, mp4/mkv/odd-sized videos, arrays, HTTP video, an MJPEG camera) and options.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import pytest
from test_triton_backend import Server, grey_clip, serving, url

from pvt_deploy import Model


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Server:  # type: ignore[misc]
    with serving(tmp_path_factory.mktemp("triton"), [{"name": "pvt_tiny", "kind": "classify", "manifest": True}]) as (
            srv, _):
        yield srv


def _open_fds() -> int:
    """The descriptors this process has open, counted after a collection: a file held by an object of an
    earlier test that awaits the garbage collector (in a reference cycle) would be counted on one side of a
    comparison and be gone on the other, whenever the collector happened to run in between."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors in /proc")
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_triton_model_runs_video_after_video_without_leaking(triton: Server, protocol: str, tmp_path: Path) -> None:
    """Each run's pipeline infers in a new thread. Over HTTP each such thread made its own tritonclient
    (a connection, and a gevent hub with two more file descriptors) that outlived it: a Model kept for
    a service's lifetime lost 3 file descriptors per video and hit the process limit after a few
    hundred; over gRPC each run's client was kept until the Model closed."""
    clip = grey_clip(tmp_path / "grey.mp4", 3)
    with Model(url(triton, protocol, "pvt_tiny")) as model:
        assert len(list(model.predict(str(clip), stream=True, threaded=True))) == 3  # warm: lazy imports, first client
        before = _open_fds()
        for _ in range(6):
            assert len(list(model.predict(str(clip), stream=True, threaded=True))) == 3
        assert _open_fds() - before <= 1, "file descriptors grow with every run on one Model"
        assert len(model.backend._clients) <= 2  # type: ignore[attr-defined]
    # closing the Model releases its connection (and the HTTP thread's event loop): over HTTP the call
    # thread closes its client and its hub after close() returns, then ends; waited for by joining it
    # (the timeout, far beyond any load, only keeps a thread that hangs from hanging the run)
    for thread in [t for t in threading.enumerate() if t.name.startswith("pvt-deploy-triton")]:
        thread.join(timeout=120)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("pvt-deploy-triton")]
    assert _open_fds() < before


def test_a_folder_or_glob_with_videos_says_what_it_leaves_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A folder (or glob) runs its images. Videos in it were skipped without a word, and a folder of
    videos only was refused as having "no images" with the list of image types, as if it were empty."""
    import cv2
    import numpy as np

    from pvt_deploy.errors import InputError
    from pvt_deploy.io.sources import open_source

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    grey_clip(mixed / "b.mp4", 2)
    with caplog.at_level("WARNING", logger="pvt_deploy.io.sources"), open_source(mixed) as source:
        assert source.kind == "images" and [f.name for f in source] == ["a.jpg"]
    assert "1 video (b.mp4) left out" in caplog.text

    videos = tmp_path / "videos"
    videos.mkdir()
    grey_clip(videos / "b.mp4", 2)
    for spec in (videos, f"{videos}/*.mp4"):
        with pytest.raises(InputError, match="only 1 video") as caught:
            open_source(spec)
        assert "each video on its own" in (caught.value.hint or "")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_precision_the_triton_model_does_not_serve_is_refused(triton: Server, protocol: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """``--precision int8 --model triton://...`` ran the served FP32 model without a word; the server
    holds one precision per model, so another is refused, and a device is said not to apply."""
    from pvt_deploy.errors import InputError

    with pytest.raises(InputError, match="serves a fp32 model, not int8"):
        Model(url(triton, protocol, "pvt_tiny"), precision="int8")
    with caplog.at_level("WARNING", logger="pvt_deploy.runtimes.loader"), \
            Model(url(triton, protocol, "pvt_tiny"), precision="fp32", device="cuda") as model:
        assert model.backend.info.precision == "fp32"
    assert ": device cuda does not apply to a Triton model" in caplog.text  # the argument, as Python takes it


def test_int8_of_a_classifier_exported_without_simplification(tmp_path: Path) -> None:
    """``export --model pvt_v2_b0-cls --int8 --no-simplify`` failed with exit 1, 'INT8 quantization (cpu)
    failed: Unable to find data type for weight_name=...': the unsimplified graph has no value_info, and
    shape inference stops at the CPU layout's com.microsoft nodes. The CPU flavour is written, passes its
    parity gate and runs."""
    import json

    import numpy as np

    from pvt_deploy.export import export

    folder = export("pvt_v2_b0-cls", tmp_path / "x", imgsz=32, simplify=False, int8=True, int8_flavour="cpu")
    parity = json.loads((folder / "manifest.json").read_text())["parity"]["model.int8.onnx"]
    assert parity["passed"] and parity["outputs"]["logits"]["cosine"] > 0.999
    with Model(str(folder / "model.int8.onnx")) as model:
        result, = model.predict(np.full((40, 48, 3), 128, np.uint8), imgsz=32)
    assert result.probs is not None and result.probs.data.shape == (1000,)


def test_export_given_a_file_of_an_export_a_lone_graph_or_a_triton_model(tmp_path: Path) -> None:
    """trtexec's --onnx and ``polygraphy convert model.onnx --fp16`` habits (and the spelling answer to
    ``export --onnx``, which is --model): ``export --model exports/x/model.onnx --half`` was 'corrupt or
    truncated checkpoint'; it adds to the export that holds the file. A lone graph says what export takes,
    and a Triton model folder, which was taken for an export folder whose re-export command (-o tri/NAME)
    would have written over it, is refused by name."""
    import shutil

    from pvt_deploy.errors import InputError
    from pvt_deploy.export import export
    from pvt_deploy.export.triton import export_triton

    folder = export("pvt_v2_b0-cls", tmp_path / "x", imgsz=32, simplify=False, parity=False)  # the files are the point
    assert export(folder / "model.onnx", half=True, parity=False) == folder
    assert (folder / "model.fp16.onnx").is_file()
    model_dir = export_triton(folder, tmp_path / "tri")
    for given in (model_dir, model_dir / "1" / "model.onnx"):
        with pytest.raises(InputError, match=f"{model_dir} is a Triton model folder"):
            export(given, half=True)
    shutil.copy(folder / "model.onnx", tmp_path / "lone.onnx")
    with pytest.raises(InputError, match="lone.onnx is an ONNX graph, not a model to export"):
        export(tmp_path / "lone.onnx", half=True)
