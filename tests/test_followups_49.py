"""Faults found by this session's helpers and mended by the lead."""
from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run


@pytest.mark.parametrize("command", ["export", "val"])
def test_a_dataset_yaml_with_a_date_yaml_cannot_make_is_refused_in_one_line(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """PyYAML reads 2020-13-45 as a date and raises ValueError, not a YAMLError: export --calib and val of such
    a dataset YAML ended in a traceback ('month must be in 1..12')."""
    (tmp_path / "images").mkdir()
    data = tmp_path / "data.yaml"
    data.write_text("path: .\nval: images\nwhen: 2020-13-45\nnames: [a]\n")
    args = {"export": ["export", "--model", "pvt_v2_b0", "--imgsz", "64", "--int8", "--calib", str(data),
                       "-o", str(tmp_path / "out")],
            "val": ["val", str(data), "--model", "pvt_v2_b0", "--imgsz", "64"]}[command]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2, err
    assert "Traceback" not in err
    assert "month must be in 1..12" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["export", "infer"])
def test_an_output_that_is_a_link_to_what_is_gone_is_refused_as_infer_refuses_it(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``-o link`` where the link leads to a folder that is not there (a drive not mounted, a folder deleted): infer
    refused it, and ``export -o link/x`` too, but ``export -o link`` made the link's target and exported there
    (on the disk beneath an unmounted drive). Both refuse it as ``mkdir -p`` does, before the model loads."""
    from pvt_deploy.assets import sample_image

    link = tmp_path / "latest"
    link.symlink_to(tmp_path / "gone")
    args = {"export": ["export", "--model", "pvt_v2_b0-cls", "--imgsz", "32", "--no-parity", "-o", str(link)],
            "infer": ["infer", str(sample_image()), "--model", "pvt_v2_b0-cls", "-o", str(link)]}[command]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2, err
    assert f"{link} is a link that leads nowhere (No such file or directory)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


@pytest.mark.parametrize("codec", ["utf-32-le", "utf-32-be"])
def test_a_list_saved_as_utf32_is_read_not_taken_for_utf16(codec: str, tmp_path: Path) -> None:
    """UTF-32's little-endian mark begins with UTF-16's (FF FE): decode_text read such a list as UTF-16, names of NULs
    between letters ('\\x00a\\x00.\\x00j...'), and the big-endian one as UTF-8 text (a NUL-laden name). The COCO sniff
    (1af03d4) and val read UTF-32 already; the lists, YOLO labels and dataset YAMLs now do too, by one test."""
    from pvt_deploy.io.sources import _listed_files
    from pvt_deploy.utils.files import decode_text

    text = "a.jpg\n# a note\nb c.png\n"
    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeff".encode(codec) + text.encode(codec))
    assert decode_text(listing.read_bytes()) == text
    assert _listed_files(listing) == ["a.jpg", "b c.png"]
