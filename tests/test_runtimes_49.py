"""Library messages that name a file keep the name as it is on disk (runs of spaces included)."""
from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from pvt_deploy.runtimes.onnxruntime import _one_line


def test_an_onnx_runtime_error_naming_a_path_with_two_spaces_keeps_them(tmp_path: Path) -> None:
    """ONNX Runtime's load error names the model's path; every run of white space was made one, so the
    message named 'a b/model.onnx', a file that is not there."""
    folder = tmp_path / "a  b"
    folder.mkdir()
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.nowhere")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.nowhere", 1)]),
              folder / "model.onnx")
    with pytest.raises(Exception) as caught:  # noqa: PT011 - ONNX Runtime's own exception class
        ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    said = _one_line(caught.value)
    assert str(folder / "model.onnx") in said
    assert not said.startswith("[ONNXRuntimeError]")
    assert "\n" not in said


def test_a_dataset_yaml_the_system_cannot_read_is_named_with_its_spaces(tmp_path: Path) -> None:
    """The system's reason quoted the path ("Is a directory: '.../a  b/data.yaml'"): the same folding made it
    name 'a b', here and in the other messages that fold a library's text (bench, export, the loader). The file is
    named once now, as given, and the reason is the system's words alone (utils.files.read_text, session 50)."""
    from pvt_deploy.data import yaml_names
    from pvt_deploy.errors import InputError

    folder = tmp_path / "a  b" / "data.yaml"
    folder.mkdir(parents=True)
    with pytest.raises(InputError) as caught:
        yaml_names(folder)
    assert str(caught.value) == f"dataset {folder}: cannot read it (Is a directory)"
