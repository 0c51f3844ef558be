"""Graph NMS (``nms="graph"``): the eager op equals ONNX NonMaxSuppression, and a graph-NMS export run
in ONNX Runtime gives the detections of the host path on the same model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from export_fixtures import images, ort_run, perturbed_detector, torch_run
from onnx import TensorProto, helper

from pvt_deploy.export.nms import onnx_nms
from pvt_deploy.export.parity import agreement_detections
from pvt_deploy.models import build_deploy_module
from pvt_deploy.tasks.postprocess import postprocess_detect
from pvt_deploy.tasks.preprocess import Letterbox
from pvt_deploy.utils import onnx_model


def test_eager_nms_equals_onnxruntime() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 300, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 10 + torch.rand(2, 300, 2, generator=g) * 60], dim=-1)
    scores = torch.rand(2, 4, 300, generator=g)
    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["b", "s", "m", "i", "t"], ["sel"])], "nms",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("sel", TensorProto.INT64, None)],
        [helper.make_tensor("m", TensorProto.INT64, [1], [20]), helper.make_tensor("i", TensorProto.FLOAT, [1], [0.5]),
         helper.make_tensor("t", TensorProto.FLOAT, [1], [0.3])])
    model = onnx_model(graph)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"b": boxes.numpy(), "s": scores.numpy()})[0]
    ref = onnx_nms(boxes, scores, 20, 0.5, 0.3).numpy()
    assert ref.shape[0] > 40
    assert sorted(map(tuple, ref.tolist())) == sorted(map(tuple, got.tolist()))


def test_graph_nms_matches_host_nms(tmp_path: Path) -> None:
    from pvt_deploy.export import export_onnx

    # The gate would compare graph NMS in ORT with graph NMS in PyTorch; here it is checked against
    # the host path instead, so skip it (the export is the slow part of this test).
    folder = export_onnx(perturbed_detector(), tmp_path / "gnms", imgsz=128, nms="graph", parity=False)
    m = onnx.load(str(folder / "model.onnx"))
    assert sum(n.op_type == "NonMaxSuppression" for n in m.graph.node) == 1
    shapes = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    assert shapes == {"num_dets": ["batch", 1], "det_boxes": ["batch", 100, 4], "det_scores": ["batch", 100],
                      "det_classes": ["batch", 100]}
    host = build_deploy_module(perturbed_detector())
    post = dict(host.postprocess)
    total = 0
    for n, h, w in ((1, 128, 128), (2, 96, 224)):  # multiples of 32: no letterbox padding to clip to
        x = images(n, h, w, seed=h)
        metas = [Letterbox((h, w), (h, w), (h, w))] * n
        graph = ort_run(folder / "model.onnx", x)
        assert graph["num_dets"].dtype == np.int32 and graph["det_classes"].dtype == np.int32
        assert graph["det_boxes"].shape == (n, 100, 4)
        for i in range(n):  # rows past num_dets are zero
            k = int(graph["num_dets"][i, 0])
            assert not graph["det_scores"][i, k:].any() and not graph["det_boxes"][i, k:].any()
        ref = postprocess_detect(torch_run(host, x), metas, post)
        got = postprocess_detect(graph, metas, post)
        report = agreement_detections(ref, got, margin=0.0)
        assert report["f1"] == 1.0 and report["matched"] == report["ref_detections"] == report["test_detections"]
        assert report["matched_box_max_abs"] < 1e-3 and report["matched_score_max_abs"] < 1e-5
        total += report["matched"]
    assert total > 50
    from pvt_deploy.manifest import read_manifest

    assert read_manifest(folder)["postprocess"]["nms"] == "graph"
    # thresholds fixed in the graph: asking for others is said, not silently ignored
    from pvt_deploy import Model

    frame = (images(1, 128, 128, seed=1)[0].transpose(1, 2, 0)).astype(np.uint8)
    handler = _Lines()
    logging.getLogger("pvt_deploy").addHandler(handler)
    try:
        with Model(folder) as model:
            model.predict(frame, iou=0.3, conf=0.01, max_det=300)
            asked = list(handler.lines)
            model.predict(frame, iou=0.5, conf=0.2, max_det=50)  # within what the graph keeps: silent
    finally:
        logging.getLogger("pvt_deploy").removeHandler(handler)
    assert any(line.startswith("iou=0.3 cannot apply: IoU 0.5 is fixed in this graph's NMS") for line in asked)
    assert any(line.startswith("conf=0.01 cannot go below the score threshold 0.05") for line in asked)
    assert any(line.startswith("max_det=300 cannot go above the 100 detections") for line in asked)
    assert handler.lines == asked


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
