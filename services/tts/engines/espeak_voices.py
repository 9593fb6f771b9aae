"""espeak-ng's voice list: which voices can speak, and in what order to offer them."""

from __future__ import annotations

import ctypes
import graphlib
import heapq
from dataclasses import dataclass
from pathlib import Path

from services.tts.engines.base import VoiceInfo

_GENDERS = {1: "male", 2: "female"}


class EspeakVoiceEntry(ctypes.Structure):
    """espeak_VOICE, as espeak_ListVoices returns it."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        # Repeated [priority byte][language string][NUL], ending with a zero byte.
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


@dataclass(frozen=True)
class ListedVoice:
    """One voice as listed, with what the library needs to select it."""

    info: VoiceInfo
    identifier: str  # the voice file's path under lang/, e.g. "gmw/en-US"
    priorities: tuple[tuple[str, int], ...]  # (language, priority), lower is preferred


def list_voices(lib: ctypes.CDLL, data_path: Path) -> list[ListedVoice]:
    """Read espeak_ListVoices(NULL): a NULL-terminated array of espeak_VOICE pointers."""
    voices: list[ListedVoice] = []
    seen: set[str] = set()
    array = lib.espeak_ListVoices(None)
    index = 0
    while array[index]:
        entry = array[index].contents
        index += 1
        identifier = (entry.identifier or b"").decode("utf-8", "replace")
        # gmw/en-US -> en-us: the voice file's name, what espeak-ng -v takes.
        name = identifier.rsplit("/", 1)[-1].casefold()
        if not name or name in seen or not _has_dictionary(data_path, identifier):
            continue
        seen.add(name)
        priorities = _languages(entry.languages)
        voices.append(
            ListedVoice(
                info=VoiceInfo(
                    name=name,
                    languages=tuple(language for language, _ in priorities),
                    gender=_GENDERS.get(entry.gender, "unknown"),
                ),
                identifier=identifier,
                priorities=priorities,
            )
        )
    return voices


def _languages(pointer: int | None) -> tuple[tuple[str, int], ...]:
    """Decode espeak's packed language list: [priority][name NUL] ... [0]."""
    languages: list[tuple[str, int]] = []
    if not pointer:
        return ()
    offset = 0
    while (priority := ctypes.c_ubyte.from_address(pointer + offset).value) != 0:
        name = ctypes.string_at(pointer + offset + 1)
        languages.append((name.decode("utf-8", "replace").casefold(), priority))
        offset += len(name) + 2
    return tuple(languages)


def _has_dictionary(data_path: Path, identifier: str) -> bool:
    """Whether the voice's pronunciation dictionary is in the data, by espeak's own rule.

    The dictionary is the voice file's ``dictionary`` line, else its first ``language``
    up to the first ``-`` (``en-us`` -> ``en_dict``).
    """
    try:
        text = (data_path / "lang" / identifier).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # not a plain voice file: let espeak be the judge
    dictionary: str | None = None
    first_language: str | None = None
    for line in text.splitlines():
        words = line.split("//", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "dictionary":
            dictionary = words[1]
        elif words[0] == "language" and first_language is None and words[1] != "variant":
            first_language = words[1].split("-", 1)[0]
    wanted = dictionary or first_language
    return wanted is None or (data_path / f"{wanted.lower()}_dict").is_file()


def order_by_preference(voices: list[ListedVoice]) -> list[ListedVoice]:
    """Move each language's preferred voice before the other voices that speak it.

    Otherwise keeps espeak's order (alphabetical by file). The preferred voice for a
    language is the one with the lowest priority for it, the earlier on a tie. When the
    preferences contradict each other, espeak's order is kept as it is.
    """
    best: dict[str, tuple[int, int]] = {}
    for index, voice in enumerate(voices):
        for language, priority in voice.priorities:
            best[language] = min(best.get(language, (priority, index)), (priority, index))
    predecessors: dict[int, set[int]] = {index: set() for index in range(len(voices))}
    for index, voice in enumerate(voices):
        for language, _ in voice.priorities:
            preferred = best[language][1]
            if preferred != index:
                predecessors[index].add(preferred)
    sorter = graphlib.TopologicalSorter(predecessors)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return voices
    # Kahn's algorithm, always taking the earliest ready voice: the order closest to espeak's.
    ready = list(sorter.get_ready())
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        sorter.done(index)
        for successor in sorter.get_ready():
            heapq.heappush(ready, successor)
    return [voices[index] for index in order]
