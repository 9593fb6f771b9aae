"""A multipart/form-data body read as it arrives, each part held to its own limit.

Starlette's form parser spools files to disk past 1 MiB and names no part in its errors;
here every part is kept in memory (the limits bound it), each is named when it is refused
(unknown, repeated, a file where text belongs, over its size), and the body is refused
the moment a part passes its limit, before the rest is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.gateway.errors import ApiError, invalid, too_large

_MAX_PART_HEADERS_BYTES = 8 * 1024
"""Longest header line of a part (Content-Disposition with a file name, Content-Type)."""


@dataclass(frozen=True)
class FormSpec:
    """The parts a form may have: text parts and file parts, each at most once."""

    text_parts: Collection[str]
    file_parts: Collection[str]
    max_text_bytes: int
    max_file_bytes: int


@dataclass
class Form:
    """What a form held: its text parts (UTF-8 decoded) and its files, by part name."""

    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Part:
    disposition: bytes = b""
    name: str = ""
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)


class _FormReader:
    """The parser's callbacks: they check each part as its headers and bytes arrive."""

    def __init__(self, spec: FormSpec) -> None:
        self._spec = spec
        self._part = _Part()
        self._header_name = b""
        self._header_value = b""
        self.form = Form()
        self.ended = False

    def on_part_begin(self) -> None:
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._part.disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.disposition)
        raw_name = options.get(b"name")
        if raw_name is None:
            raise invalid("body", "a part has no name (Content-Disposition: form-data; name=...)")
        name = raw_name.decode("utf-8", errors="replace")
        spec = self._spec
        if name not in spec.text_parts and name not in spec.file_parts:
            expected = ", ".join([*spec.text_parts, *spec.file_parts])
            raise invalid(name, f"is not a part of this form (parts: {expected})")
        if name in self.form.texts or name in self.form.files:
            raise invalid(name, "is given twice")
        is_file = b"filename" in options
        if is_file and name in spec.text_parts:
            raise invalid(name, "is text, not a file")
        if not is_file and name in spec.file_parts:
            raise invalid(name, "must be a file (Content-Disposition with a filename)")
        self._part.name, self._part.is_file = name, is_file

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        part.data += data[start:end]
        limit = self._spec.max_file_bytes if part.is_file else self._spec.max_text_bytes
        if len(part.data) > limit:
            raise too_large(part.name, f"is over the limit of {limit} bytes")

    def on_part_end(self) -> None:
        part = self._part
        if part.is_file:
            self.form.files[part.name] = bytes(part.data)
            return
        try:
            self.form.texts[part.name] = part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(part.name, "is not valid UTF-8") from None

    def on_end(self) -> None:
        self.ended = True


async def read_form(content_type: str, body: AsyncIterator[bytes], spec: FormSpec) -> Form:
    """Parse ``body``, a multipart/form-data body of ``content_type``, as ``spec`` says.

    Raises ApiError: 415 when the body is not multipart/form-data; 400 naming the part for
    an unknown, repeated or mistyped part, or ``body`` when the body does not parse or
    ends early; 413 naming the part that passed its limit.
    """
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise ApiError(
            415,
            "body: must be multipart/form-data",
            param="body",
            code="unsupported_media_type",
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise invalid("body", "multipart/form-data without a boundary")
    reader = _FormReader(spec)
    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": reader.on_part_begin,
                "on_part_data": reader.on_part_data,
                "on_part_end": reader.on_part_end,
                "on_header_field": reader.on_header_field,
                "on_header_value": reader.on_header_value,
                "on_header_end": reader.on_header_end,
                "on_headers_finished": reader.on_headers_finished,
                "on_end": reader.on_end,
            },
            max_header_size=_MAX_PART_HEADERS_BYTES,
        )
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as error:
        raise invalid("body", f"not valid multipart/form-data: {error}") from None
    if not reader.ended:
        raise invalid("body", "the multipart body ends before its closing boundary")
    return reader.form
