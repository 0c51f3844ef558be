"""Follow-ups of session 48, second set: a count said in the plural for one; weights='official' given with a
model file; a video whose display matrix mirrors its frames."""

from __future__ import annotations

from pathlib import Path

import pytest
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
