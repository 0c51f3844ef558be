"""`pvt-deploy doctor` (session 51, helper DH): the H.264 row's word on a hardware encoder's size limits says what
infer does where a video's size is past them.

The encoders are PyAV's own; NVENC is a stand-in (libx264's context under its name: no NVIDIA driver here)."""

from __future__ import annotations

from typing import Any

import pytest

from pvt_deploy import doctor


@pytest.mark.parametrize(("others_open", "said"), [
    (True, "h264_nvenc yes, libx264 yes, libopenh264 {openh264} (h264_nvenc: a size past its GPU's limits is written "
           "with libx264 instead, with a warning)"),
    (False, "h264_nvenc yes, libx264 no, libopenh264 no (h264_nvenc: a size past its GPU's limits cannot be written: "
            "no other encoder opens)"),
])
def test_the_h264_row_says_what_infer_does_with_a_size_nvenc_refuses(
        monkeypatch: pytest.MonkeyPatch, others_open: bool, said: str) -> None:
    """The row said only 'another size may be past its GPU's limits' where NVENC opened, although infer (codec auto)
    now writes a video NVENC refuses with the next encoder that opens at its size, with a warning (a545cee): it says
    that, naming the encoder; where no other opens, that such a size cannot be written."""
    import av

    real = av.CodecContext.create

    def create(name: str, mode: str = "r") -> Any:
        if name == "h264_nvenc":
            return real("libx264", mode)
        if not others_open:
            raise av.error.EncoderNotFoundError(0, name)
        return real(name, mode)

    monkeypatch.setattr(av.CodecContext, "create", create)
    (row,) = [r for r in doctor._pyav(True) if r.key == "h264_encoders"]
    openh264 = "yes" if "libopenh264" in row.info["usable"] else "no"  # as this PyAV's FFmpeg has it
    assert row.summary == "opened at 256x256: " + said.format(openh264=openh264)
    assert row.status == "ok" and row.info["usable"][0] == "h264_nvenc"
