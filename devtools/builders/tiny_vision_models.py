"""Small models with the real formats, built here because weights cannot be downloaded.

Tests and benchmarks load them through the production engines: a YOLO11n with random weights
(as a ``.pt`` checkpoint and as its ONNX export) and an ONNX graph with BiRefNet's input and
outputs whose "matte" is high where the image is bright.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from services.vision.engines.birefnet import INPUT_SIDE
from services.vision.engines.yolo import PERSON, offline_ultralytics

# "person" is not class 0, so the engine's look-up by name is what finds it.
YOLO_NAMES = {0: "car", 1: PERSON}
BIREFNET_INPUT = "input_image"
BIREFNET_OPSET = 17


def build_yolo_pt(directory: Path, seed: int = 0) -> Path:
    """A YOLO11n with random weights and classes ``YOLO_NAMES``, saved as ``.pt``.

    Every box it finds is a person scoring 0.5: enough to test the plumbing, not accuracy.
    """
    offline_ultralytics()
    import torch
    from ultralytics.models.yolo import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    # yolo11n.yaml ships inside ultralytics; the file name picks the "n" scale.
    model = YOLO("yolo11n.yaml", task="detect")
    network: Any = DetectionModel(  # type: ignore[no-untyped-call]
        "yolo11n.yaml", nc=len(YOLO_NAMES), verbose=False
    )
    network.names = dict(YOLO_NAMES)
    # Random weights leave every class score at its prior (about 0.0004 for each box and
    # image); a zero bias on "person" makes every anchor a 0.5 person instead, so detections
    # come out at ordinary thresholds and limits have something to cut.
    person = next(index for index, label in YOLO_NAMES.items() if label == PERSON)
    with torch.no_grad():
        for branch in network.model[-1].cv3:
            branch[-1].bias[person] = 0.0
    model.model = network
    path = Path(directory) / "tiny-yolo11n.pt"
    model.save(str(path))
    loaded = YOLO(str(path), task="detect")
    if dict(loaded.names) != YOLO_NAMES:
        raise RuntimeError(f"{path} loads back with classes {loaded.names}, not {YOLO_NAMES}")
    return path


def export_yolo_onnx(pt_path: Path, image_size: int = 320) -> Path:
    """The ONNX export of ``pt_path`` at a fixed ``image_size`` (next to it, ``.onnx``)."""
    offline_ultralytics()
    from ultralytics.models.yolo import YOLO

    exported = YOLO(str(pt_path), task="detect").export(
        format="onnx", imgsz=image_size, verbose=False
    )
    return Path(str(exported))


def build_birefnet_like_onnx(path: Path) -> Path:
    """A two-op ONNX net shaped like BiRefNet: 1x3x1024x1024 in, two 1x1x1024x1024 out.

    The last output (the one the engine must read) is a 1x1 convolution summing the
    normalised channels plus 0.5, so bright pixels get high logits: white gives about +8,
    black about -5.5. The first output is the negated channel mean, the opposite matte, so an engine
    reading the wrong output fails the tests.
    """
    side = INPUT_SIDE
    image = helper.make_tensor_value_info(BIREFNET_INPUT, TensorProto.FLOAT, [1, 3, side, side])
    coarse = helper.make_tensor_value_info("coarse", TensorProto.FLOAT, [1, 1, side, side])
    fine = helper.make_tensor_value_info("fine", TensorProto.FLOAT, [1, 1, side, side])
    weight = numpy_helper.from_array(np.ones((1, 3, 1, 1), dtype=np.float32), "weight")
    bias = numpy_helper.from_array(np.array([0.5], dtype=np.float32), "bias")
    nodes = [
        helper.make_node("ReduceMean", [BIREFNET_INPUT], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Neg", ["mean"], ["coarse"]),
        helper.make_node("Conv", [BIREFNET_INPUT, "weight", "bias"], ["fine"]),
    ]
    graph = helper.make_graph(nodes, "birefnet_like", [image], [coarse, fine], [weight, bias])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", BIREFNET_OPSET)], producer_name="chorus"
    )
    # IR 8 is what opset 17 came with; older runtimes refuse newer IR versions.
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
