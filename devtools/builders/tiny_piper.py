"""A Piper voice built in code: a tiny ONNX graph with a Piper model's inputs and output,
and its ``.onnx.json``, for what the packaged voice cannot show (several speakers, broken
configs, a graph that cannot be cut) at a fraction of its load time.

The graph speaks a tone, not words, laid out as Piper's exporter lays out a VITS: a front
that makes latent frames, ``length_scale`` frames per input id, and nodes named ``/dec/``
that decode each frame into HOP samples of a sine of ``200 + 50 * sid`` Hz (the front
hands them the tone's phase at each frame and, with several speakers, the speaker's
frequency, as a VITS's front hands its decoder the speaker's embedding). So its audio is
exact, tells which speaker, rate and text length it was asked for, and decodes window by
window to the same samples as whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from services.tts.engines.piper_voice import PACKAGED_VOICE_FILE, locate_voice

SAMPLE_RATE = 22050
HOP = 256
BASE_HZ = 200.0
HZ_PER_SPEAKER = 50.0
AMPLITUDE = 0.3


def _constant(name: str, values: Sequence[float], shape: Sequence[int] = ()) -> Any:
    kind = TensorProto.INT64 if all(isinstance(v, int) for v in values) else TensorProto.FLOAT
    return helper.make_node(
        "Constant", [], [name], name=name, value=helper.make_tensor(name, kind, shape, values)
    )


def tiny_graph(multi_speaker: bool, decoder_scope: str = "/dec/") -> onnx.ModelProto:
    """The tone model; it takes ``sid`` when ``multi_speaker``. Its decoder's nodes are
    named under ``decoder_scope``; another scope than Piper's makes a graph that the piper
    engine cannot cut, and runs whole."""
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
    ]
    radians_per_hz = 2 * math.pi / SAMPLE_RATE
    front = [
        _constant("/one", [1]),
        helper.make_node("Shape", ["input"], ["/shape"], name="/Shape"),
        helper.make_node("Gather", ["/shape", "/one"], ["/ids"], name="/Gather_ids"),
        helper.make_node("Cast", ["/ids"], ["/ids_f"], name="/Cast", to=TensorProto.FLOAT),
        helper.make_node("Gather", ["scales", "/one"], ["/length_scale"], name="/Gather_scale"),
        helper.make_node("Mul", ["/ids_f", "/length_scale"], ["/frames_f"], name="/Mul_frames"),
        helper.make_node("Floor", ["/frames_f"], ["/frames"], name="/Floor"),
        _constant("/zero", [0.0]),
        _constant("/step", [1.0]),
        helper.make_node("Range", ["/zero", "/frames", "/step"], ["/t"], name="/Range"),
        _constant("/base_hz", [BASE_HZ], [1]),
    ]
    if multi_speaker:
        inputs.append(helper.make_tensor_value_info("sid", TensorProto.INT64, [1]))
        front += [
            helper.make_node("Cast", ["sid"], ["/sid_f"], name="/Cast_sid", to=TensorProto.FLOAT),
            _constant("/hz_per_speaker", [HZ_PER_SPEAKER]),
            helper.make_node("Mul", ["/sid_f", "/hz_per_speaker"], ["/speaker_hz"], name="/Mul_s"),
            helper.make_node("Add", ["/base_hz", "/speaker_hz"], ["/hz"], name="/Add_hz"),
        ]
    else:
        front.append(helper.make_node("Identity", ["/base_hz"], ["/hz"], name="/Identity_hz"))
    front += [
        _constant("/radians_per_hz", [radians_per_hz]),
        helper.make_node("Mul", ["/hz", "/radians_per_hz"], ["/omega"], name="/Mul_omega"),
        _constant("/hop", [float(HOP)]),
        helper.make_node("Mul", ["/omega", "/hop"], ["/per_frame"], name="/Mul_hop"),
        helper.make_node("Mul", ["/t", "/per_frame"], ["/phases"], name="/Mul_phase"),
        _constant("/latent_shape", [1, 1, -1], [3]),
        # The latent frames, [1, 1, frames]: the tone's phase where each frame starts.
        helper.make_node("Reshape", ["/phases", "/latent_shape"], ["/latent"], name="/Reshape"),
    ]
    scope = decoder_scope
    decoder = [
        # First decoder node, reading the latent frames first (as Piper's conv_pre does).
        _constant(f"{scope}axis", [3], [1]),
        helper.make_node(
            "Unsqueeze", ["/latent", f"{scope}axis"], [f"{scope}frames"], name=f"{scope}Unsqueeze"
        ),
        _constant(f"{scope}k", [float(k) for k in range(HOP)], [1, 1, 1, HOP]),
    ]
    if multi_speaker:
        # The speaker's frequency comes from the front, as a VITS's speaker embedding does.
        front += [
            _constant("/g_shape", [1, 1, 1], [3]),
            helper.make_node("Reshape", ["/omega", "/g_shape"], ["/g"], name="/Reshape_g"),
        ]
        decoder.append(
            helper.make_node("Mul", [f"{scope}k", "/g"], [f"{scope}steps"], name=f"{scope}Mul_g")
        )
    else:
        decoder += [
            _constant(f"{scope}omega", [BASE_HZ * radians_per_hz]),
            helper.make_node(
                "Mul", [f"{scope}k", f"{scope}omega"], [f"{scope}steps"], name=f"{scope}Mul_w"
            ),
        ]
    decoder += [
        helper.make_node(
            "Add", [f"{scope}frames", f"{scope}steps"], [f"{scope}phase"], name=f"{scope}Add"
        ),
        helper.make_node("Sin", [f"{scope}phase"], [f"{scope}wave"], name=f"{scope}Sin"),
        _constant(f"{scope}amplitude", [AMPLITUDE]),
        helper.make_node(
            "Mul", [f"{scope}wave", f"{scope}amplitude"], [f"{scope}tone"], name=f"{scope}Mul_a"
        ),
    ]
    tail = [
        _constant("/out_shape", [1, 1, 1, -1], [4]),
        helper.make_node("Reshape", [f"{scope}tone", "/out_shape"], ["output"], name="/Out"),
    ]
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 1, "samples"])
    graph = helper.make_graph([*front, *decoder, *tail], "tiny_piper", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8  # what ONNX Runtime reads for opset 15
    onnx.checker.check_model(model)
    return model


def packaged_config() -> dict[str, Any]:
    """The packaged joe voice's config: a real Piper config to start from."""
    model = locate_voice("")
    config: dict[str, Any] = json.loads(
        model.with_name(PACKAGED_VOICE_FILE + ".json").read_text(encoding="utf-8")
    )
    return config


def build_piper_voice(
    folder: Path,
    name: str = "xx_XX-tiny-low",
    speakers: Sequence[str] = (),
    decoder_scope: str = "/dec/",
) -> Path:
    """Write ``<name>.onnx`` and its ``.onnx.json`` into ``folder``; returns the .onnx.

    With ``speakers``, the voice has one speaker per name, ids in order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{name}.onnx"
    onnx.save(tiny_graph(bool(speakers), decoder_scope), model)
    config = packaged_config()
    config["dataset"] = name
    config["num_speakers"] = max(1, len(speakers))
    config["speaker_id_map"] = {speaker: index for index, speaker in enumerate(speakers)}
    write_config(model, config)
    return model


def write_config(model: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as the ``.onnx.json`` beside ``model``; returns its path."""
    path = model.with_name(model.name + ".json")
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path
