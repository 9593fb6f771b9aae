"""Where a Coqui TTS model's files are, and a fingerprint of what they hold.

A model is configured as a local folder (a checkpoint and ``config.json``, as Coqui's
trainer writes them) or as a Coqui model name (``tts_models/en/ljspeech/vits``), looked up
in a models folder laid out as Coqui's own download cache: one folder per model, named
after it with ``/`` replaced by ``--``. Nothing is downloaded unless the operator allows
it; a model that is not there fails with the path where it was looked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.common.fingerprint import fingerprint_files

CHECKPOINT_NAMES = (
    "model.pth",
    "best_model.pth",
    "model_file.pth",
    "checkpoint.pth",
    "model_file.pth.tar",
)
"""Checkpoint file names, in the order they are preferred (Coqui's, plus its trainer's)."""

# Files beside the checkpoint that change what a model says (speakers, languages, XTTS's
# vocabulary), so they count towards its fingerprint.
_SIDE_FILES = (
    "vocab.json",
    "speakers_xtts.pth",
    "speakers.json",
    "speakers.pth",
    "speaker_ids.json",
    "speaker_ids.pth",
    "language_ids.json",
    "scale_stats.npy",
)


@dataclass(frozen=True)
class ModelFiles:
    """A model's checkpoint and config, and the folder that holds them."""

    folder: Path
    checkpoint: Path
    config: Path

    @property
    def architecture(self) -> str:
        """The config's ``model`` field: ``vits``, ``xtts``, ``tacotron2``, ..."""
        try:
            config = json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read Coqui config {self.config}: {error}") from error
        architecture = config.get("model") if isinstance(config, dict) else None
        if not isinstance(architecture, str):
            raise ValueError(f"{self.config} is not a Coqui TTS config: it names no model")
        return architecture.lower()

    def fingerprint(self) -> str:
        """SHA-256 over the config, the checkpoint and the side files present (see
        services.common.fingerprint)."""
        side_files = [self.folder / name for name in _SIDE_FILES]
        return fingerprint_files(
            path for path in (self.config, self.checkpoint, *side_files) if path.is_file()
        )


def is_model_name(model: str) -> bool:
    """Whether ``model`` has the shape of a Coqui model name: ``tts_models/lang/dataset/model``."""
    parts = model.split("/")
    return len(parts) == 4 and parts[0] == "tts_models" and all(parts)


def locate_model(model: str, models_dir: str = "", allow_download: bool = False) -> ModelFiles:
    """The files of the configured ``model``: a folder, else a Coqui model name.

    A name is looked up in ``models_dir`` (empty: Coqui's own cache folder, under
    ``TTS_HOME`` or ``XDG_DATA_HOME`` or ``~/.local/share``, then ``tts``). When it is not
    there, Coqui's ModelManager downloads it only if ``allow_download``; otherwise, and for
    a folder that does not exist, FileNotFoundError names the path and the setting.
    """
    if not model:
        raise FileNotFoundError(
            "no Coqui model configured: set CHORUS_COQUI_MODEL to a model folder or a "
            "Coqui model name such as tts_models/en/ljspeech/vits"
        )
    path = Path(model).expanduser()
    if path.is_dir():
        return model_files_in(path)
    if not is_model_name(model):
        raise FileNotFoundError(
            f"Coqui model folder {str(path)!r} not found (CHORUS_COQUI_MODEL); it should "
            f"hold config.json and one of {', '.join(CHECKPOINT_NAMES)}"
        )

    from TTS.utils.manage import ModelManager

    manager = ModelManager(progress_bar=False)
    if models_dir:
        # The folder that holds the model folders, which is what the manager calls its
        # output_prefix (its constructor would append "tts" to the one given).
        manager.output_prefix = Path(models_dir).expanduser()
    folder = Path(manager.output_prefix) / model.replace("/", "--")
    if folder.is_dir():
        return model_files_in(folder)
    if not allow_download:
        raise FileNotFoundError(
            f"Coqui model {model!r} not found at {folder} (CHORUS_COQUI_MODELS_DIR); put its "
            "files there, or set CHORUS_COQUI_ALLOW_DOWNLOAD=true to download it"
        )
    model_type, language, dataset, name = model.split("/")
    try:
        item = manager.models_dict[model_type][language][dataset][name]
    except KeyError as error:
        raise FileNotFoundError(f"{model!r} is not in Coqui's list of models") from error
    if not manager.tos_agreed(item, folder):
        # The manager would otherwise ask on stdin, and a server has nobody to answer.
        raise PermissionError(
            f"Coqui model {model!r} is licensed under terms that must be accepted before "
            "downloading: set COQUI_TOS_AGREED=1 once they are"
        )
    checkpoint, config, _ = manager.download_model(model)
    if config is None:
        raise FileNotFoundError(f"Coqui model {model!r} was downloaded without a config.json")
    return ModelFiles(folder=Path(checkpoint).parent, checkpoint=Path(checkpoint), config=config)


def model_files_in(folder: Path) -> ModelFiles:
    """The checkpoint and config in ``folder``; FileNotFoundError naming what is missing."""
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"Coqui model folder {folder} has no config.json")
    for name in CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return ModelFiles(folder=folder, checkpoint=folder / name, config=config)
    checkpoints = sorted(folder.glob("*.pth"))
    if len(checkpoints) == 1:
        return ModelFiles(folder=folder, checkpoint=checkpoints[0], config=config)
    found = ", ".join(path.name for path in checkpoints) or "none"
    raise FileNotFoundError(
        f"Coqui model folder {folder} has no checkpoint named {', '.join(CHECKPOINT_NAMES)} "
        f"(other .pth files: {found})"
    )
