"""Follow-ups of session 48, second set: a count said in the plural for one; weights='official' given with a
model file; a video whose display matrix mirrors its frames."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_run import run
from test_runtime_artifacts import cached_export

from pvt_deploy import Model
from pvt_deploy.errors import InputError


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
