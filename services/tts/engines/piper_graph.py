"""Cutting a Piper model in two before its decoder, so that audio is decoded a window at a time.

A Piper VITS makes a piece in two stages: the front (text encoder, durations, flow) turns
phoneme ids into latent frames, one per 256 samples; the decoder (HiFi-GAN, 60% of the
time) turns frames into samples. The decoder is convolutional, so a window of frames
with some frames of context on each side decodes to the same samples as the whole: run
apart, the first samples of a piece need the front and one short window, not the whole
piece (services.tts.engines.piper_runner).

Piper's exporter names the decoder's nodes ``/dec/...``; the cut is at the tensors they
read from the rest of the graph: the latent frames, which the decoder's first node reads,
and for a multi-speaker voice the speaker's embedding, the same for every window. The
``onnx`` package edits the graph.

The front also gives the durations its length regulator used, when the graph has them
(``find_durations``): how many frames each input id lasts, so which sample each phoneme,
hence each word, starts at (word timings). They are computed anyway; a run that does not
ask for them does not fetch them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DECODER_SCOPE = "/dec/"
"""The name prefix of the decoder's nodes in a graph exported by Piper."""


@dataclass(frozen=True)
class SplitModel:
    """A Piper model as two ONNX models, serialised for ONNX Runtime."""

    front: bytes
    """The model's inputs to the latent frames and the side inputs."""
    decoder: bytes
    """The latent frames and the side inputs to the model's output."""
    latent: str
    """The name of the latent frames: float32 [1, channels, frames]."""
    side_inputs: tuple[str, ...] = ()
    """What else the decoder reads: the same whatever window it decodes."""
    durations: str | None = None
    """The front's extra output: the frames of each input id, float32 [1, 1, ids]; None
    when the graph has none that ``find_durations`` recognises."""


@dataclass(frozen=True)
class TimedModel:
    """A whole Piper model (one that cannot be cut) with its durations as a second output."""

    model: bytes
    durations: str


class CannotSplit(Exception):
    """The model cannot be cut before its decoder; the message says why."""


def split_at_decoder(model: Path) -> SplitModel:
    """``model`` cut where its decoder starts.

    CannotSplit when the ``onnx`` package is missing, or when the graph has no decoder
    that makes the model's one output from tensors of the rest of the graph (not a graph
    Piper exported); ValueError naming the file when it is not an ONNX model at all.
    """
    try:
        import onnx
        import onnx.shape_inference
        import onnx.utils
    except ModuleNotFoundError as error:
        raise CannotSplit("the onnx package is not installed") from error

    try:
        proto = onnx.load(str(model))
    # onnx raises protobuf's DecodeError, or others, for a file that is no ONNX model.
    except Exception as error:
        raise ValueError(f"cannot load Piper model {model}: {error}") from error
    graph = proto.graph
    decoder_nodes = [node for node in graph.node if node.name.startswith(DECODER_SCOPE)]
    if not decoder_nodes:
        raise CannotSplit(f"no {DECODER_SCOPE} nodes")
    made_inside = {output for node in decoder_nodes for output in node.output}
    constants = {initializer.name for initializer in graph.initializer}
    # In node order: the first tensor the decoder reads from outside is what its first
    # layer reads, the latent frames (Piper's conv_pre, before the speaker's cond).
    read_from_outside = list(
        dict.fromkeys(
            name
            for node in decoder_nodes
            for name in node.input
            if name and name not in made_inside and name not in constants
        )
    )
    if not read_from_outside:
        raise CannotSplit("the decoder reads nothing from the rest of the graph")
    if len(graph.output) != 1:
        raise CannotSplit(f"the model has {len(graph.output)} outputs (1 expected)")
    latent, *others = read_from_outside
    side_inputs = tuple(others)
    durations = find_durations(graph)
    extra = [durations] if durations is not None else []
    inputs = [value.name for value in graph.input]
    described = {value.name for value in graph.value_info}
    if not described.issuperset([*read_from_outside, *extra]):
        # The extractor needs the cut tensors' types, which Piper's exporter records and
        # other exporters may not.
        proto = onnx.shape_inference.infer_shapes(proto)
    extractor = onnx.utils.Extractor(proto)
    front = extractor.extract_model(inputs, [latent, *side_inputs, *extra])
    decoder = extractor.extract_model([latent, *side_inputs], [graph.output[0].name])
    available = {latent, *side_inputs} | {init.name for init in decoder.graph.initializer}
    available |= {output for node in decoder.graph.node for output in node.output}
    if any(name and name not in available for node in decoder.graph.node for name in node.input):
        raise CannotSplit("the model's output depends on more than its decoder")
    return SplitModel(
        front.SerializeToString(), decoder.SerializeToString(), latent, side_inputs, durations
    )


def find_durations(graph: Any) -> str | None:
    """The tensor of each input id's frames in a VITS graph (an onnx GraphProto): what its
    length regulator reads, ``w_ceil = ceil(exp(logw) * mask * length_scale)``, the one
    Ceil whose output a CumSum reads (the path from durations to frames). None when no
    single tensor is that: no word timings from such a graph, rather than wrong ones."""
    cumsum_inputs = {node.input[0] for node in graph.node if node.op_type == "CumSum"}
    found = [
        node.output[0]
        for node in graph.node
        if node.op_type == "Ceil" and node.output[0] in cumsum_inputs
    ]
    return found[0] if len(found) == 1 else None


def expose_durations(model: Path) -> TimedModel | None:
    """``model`` whole with its durations (``find_durations``) as a second output, for a
    model that cannot be cut; None when the ``onnx`` package is missing or the graph has
    no durations it recognises. ValueError naming the file when it is not an ONNX model."""
    try:
        import onnx
        import onnx.shape_inference
    except ModuleNotFoundError:
        return None
    try:
        proto = onnx.load(str(model))
    except Exception as error:
        raise ValueError(f"cannot load Piper model {model}: {error}") from error
    durations = find_durations(proto.graph)
    if durations is None:
        return None
    described = {value.name: value for value in proto.graph.value_info}
    if durations not in described:
        proto = onnx.shape_inference.infer_shapes(proto)
        described = {value.name: value for value in proto.graph.value_info}
    value = described.get(durations)
    if value is None:
        return None
    proto.graph.output.append(value)
    return TimedModel(proto.SerializeToString(), durations)
