"""Hypothesis strategies that turn a valid request into the requests careless and hostile
clients send: fields set to any value of their type (unknown enum numbers, NaN, huge and
negative numbers, odd strings, garbage bytes), and serialised bytes flipped, cut or grown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
DOUBLE = st.floats(allow_nan=True, allow_infinity=True)
FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=32)
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "en", "en-us", "celebration", "default", "x" * 6000, "\x00"]),
)


def field_values(field: FieldDescriptor, media: Sequence[bytes], depth: int) -> st.SearchStrategy:
    """Any value a client can put in ``field`` (one element, for a repeated field)."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return message_dicts(field.message_type, media, depth + 1)
    if kind == FieldDescriptor.TYPE_ENUM:
        # Proto3 enums are open: numbers the server does not know arrive as they are.
        return st.integers(-3, 120)
    if kind == FieldDescriptor.TYPE_STRING:
        return TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from(list(media)))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return DOUBLE
    if kind == FieldDescriptor.TYPE_FLOAT:
        return FLOAT
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return UINT32
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return UINT64
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return INT64
    return INT32


def message_dicts(
    descriptor: Descriptor, media: Sequence[bytes], depth: int = 0
) -> st.SearchStrategy[dict[str, object]]:
    """Field values for a message of ``descriptor``: any subset of its fields, each set to
    any value of its type (nested messages up to two levels down)."""
    if depth > 2:
        return st.just({})
    fields: dict[str, st.SearchStrategy] = {}
    for field in descriptor.fields:
        values = field_values(field, media, depth)
        is_repeated = field.is_repeated
        fields[field.name] = st.lists(values, max_size=4) if is_repeated else values
    return st.fixed_dictionaries({}, optional=fields)


def field_mutants(valid: Message, media: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """``valid`` with some of its fields replaced by any value of their type, serialised."""

    def build(changes: dict[str, object]) -> bytes:
        message = type(valid)()
        message.CopyFrom(valid)
        for name, value in changes.items():
            message.ClearField(name)
            _assign(message, name, value)
        return message.SerializeToString()

    return message_dicts(message_descriptor(valid), media).map(build)


def message_descriptor(message: Message) -> Descriptor:
    """``message``'s descriptor (the upb and Python descriptor types are one at run time)."""
    return cast("Descriptor", message.DESCRIPTOR)


def byte_mutants(valid: Message) -> st.SearchStrategy[bytes]:
    """``valid``'s serialised bytes with bytes flipped, cut off or inserted."""
    data = valid.SerializeToString()

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        mutated = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            where = draw(st.integers(0, max(len(mutated) - 1, 0)))
            action = draw(st.sampled_from(["flip", "cut", "insert"]))
            if action == "flip" and mutated:
                mutated[where] ^= draw(st.integers(1, 255))
            elif action == "cut":
                del mutated[where:]
            else:
                mutated[where:where] = draw(st.binary(min_size=1, max_size=8))
        return bytes(mutated)

    return mutate()


def request_mutants(valid: Message, media: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """What a careless or hostile client might send instead of ``valid``."""
    return st.one_of(
        st.just(valid.SerializeToString()), field_mutants(valid, media), byte_mutants(valid)
    )


def _assign(message: Message, name: str, value: object) -> None:
    field = message.DESCRIPTOR.fields_by_name[name]
    target = getattr(message, name)
    if field.is_repeated:
        assert isinstance(value, list)
        for element in value:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(target.add(), element)
            else:
                target.append(element)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _fill(target, value)
    else:
        setattr(message, name, value)


def _fill(message: Message, values: object) -> None:
    assert isinstance(values, dict)
    message.SetInParent()
    for name, value in values.items():
        _assign(message, name, value)
