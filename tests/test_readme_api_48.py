"""What README's "Models" and "Python API" sections promise, checked where this session found the code short
of it: "a wrong count or an empty name is one line, exit 2" (``--names``, ``names=``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run

from pvt_deploy import Model
from pvt_deploy.assets import sample_images
from pvt_deploy.data import class_names, given_names
from pvt_deploy.errors import InputError


def _imagenet_yaml(tmp_path: Path, blank: tuple[int, ...]) -> Path:
    """An Ultralytics-style ImageNet dataset YAML, its 1000 names by id, those of ``blank`` left empty (YAML's null)."""
    names = class_names("imagenet")
    lines = [f"  {i}: {'' if i in blank else repr(n)}" for i, n in enumerate(names)]
    path = tmp_path / "imagenet.yaml"
    path.write_text("path: ../datasets/imagenet\nnames:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_an_empty_name_among_many_is_named_by_its_class_not_by_every_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty name among ImageNet's 1000 (a dataset YAML with one left blank, a list with one "") was refused
    with every name given spelt out, a line of 10 KB that does not say which class lacks its name. The error names
    the class ids, a few of them, and how many names were given, on a short line."""
    names = class_names("imagenet")
    one = [*names[:7], "", *names[8:]]
    with pytest.raises(InputError) as e:
        given_names(one, 1000, "pvt_v2_b0-cls")
    text = str(e.value)
    assert "an empty name" in text and "class 7" in text and "1000 names" in text, text
    assert len(text) < 200 and "\n" not in text and names[0] not in text, text

    many = tuple(range(100, 1000, 100))  # 9 blank: the first few by id, then how many more
    with pytest.raises(InputError) as e:
        given_names(str(_imagenet_yaml(tmp_path, many)), 1000, "pvt_v2_b0-cls")
    text = str(e.value)
    assert "classes 100, 200, 300, 400, 500 and 4 more" in text and len(text) < 200, text

    with pytest.raises(InputError, match=r"an empty name for class 1 \(of 3 names given\)"):
        given_names("car,,bus", 3, "m")  # a short list is said the same way

    # through the Python API and the CLI: the same line, before a picture is read
    with pytest.raises(InputError, match="an empty name for class 7 ") as e:
        Model("pvt_v2_b0-cls", names=one)
    assert len(str(e.value)) < 200
    monkeypatch.chdir(tmp_path)
    code, out, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", "pvt_v2_b0-cls",
                         "--names", str(_imagenet_yaml(tmp_path, (999,))), "--no-save")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "an empty name for class 999 (of 1000 names given)" in lines[-1], err
    assert len(lines[-1]) < 250 and names[0] not in err, err


def test_bench_of_a_triton_model_folder_says_its_reason_once(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """docs/docker.md: bench given a Triton model folder says how to run it. It said so five times, once for
    each default backend (torch, onnx, onnx-fp16, onnx-int8, trt), the same 300 characters each, on one line
    of 1.5 KB. Backends refused for the same reason share it; another reason is still said on its own."""
    from test_runtime_artifacts import cached_export

    from pvt_deploy.bench import nothing_ran
    from pvt_deploy.export.triton import export_triton

    model_dir = export_triton(cached_export(tmp_path_factory, "cls"), tmp_path / "tri")
    code, _, err = run(monkeypatch, capsys, "bench", "--model", str(model_dir), "--iters", "1", "--warmup", "0")
    last = " ".join(err.split())
    assert code == 2, err
    assert last.startswith(f"error: no backend could be benchmarked here: torch, onnx, onnx-fp16, onnx-int8, trt: "
                           f"{model_dir} is a Triton model folder: serve it"), last
    assert last.count("is a Triton model folder") == 1 and "triton://HOST:8000/" in last, last

    rows = [{"backend": "torch", "status": "skipped", "reason": "r1", "exit_code": 3},
            {"backend": "onnx", "status": "skipped", "reason": "r2", "exit_code": 3},
            {"backend": "trt", "status": "skipped", "reason": "r1", "exit_code": 3}]
    assert str(nothing_ran(rows, "none ran")) == "none ran (torch, trt: r1; onnx: r2)"
