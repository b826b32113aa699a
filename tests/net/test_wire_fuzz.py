"""Whatever bytes arrive, decode answers with a frame or a WireError, never anything else.

A daemon reads frames from anyone who can reach its port (before authentication, a bug or an
attacker); the only acceptable outcome of bad input is an error it can log and count.
Random bytes, random msgpack structures, frames that are almost right (a known kind with random
fields) and damaged copies of real frames are thrown at it.
"""

from __future__ import annotations

from typing import Final

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sd_actors.net import Frame, MessageRegistry, WireError
from tests.net.messages import Everything, Leaf, OtherLeaf, Tree, make_registry

MAX_SIZE: Final = 1 << 16

FUZZ: Final = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Built once: hypothesis calls each test hundreds of times, and decoding never changes a registry.
REGISTRY: Final = make_registry()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
field_names = st.sampled_from(
    ["text", "number", "ratio", "flag", "blob", "nothing", "color", "level", "mode", "names", "pair", "table", "leaf",
     "leaves", "either", "name", "children", "value", "k", "b", "size", ""]
)
kinds = st.sampled_from([*REGISTRY.kinds, "test.unknown", ""])


def nested_messages(values: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({"k": kinds, "b": st.dictionaries(field_names, values, max_size=4)})


msgpack_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8) | field_names, children, max_size=5)
        | nested_messages(children)
    ),
    max_leaves=30,
)


def decode_or_refuse(registry: MessageRegistry, data: bytes) -> Frame | None:
    try:
        return registry.decode(data, max_size=MAX_SIZE)
    except WireError as error:
        refusal = error
    assert refusal.message, "every WireError says what went wrong"
    assert refusal.hint, "every WireError says how to fix it"
    return None


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_are_decoded_or_refused_with_a_wire_error(data: bytes) -> None:
    decode_or_refuse(REGISTRY, data)


@FUZZ
@given(msgpack_values)
def test_random_msgpack_structures_are_decoded_or_refused_with_a_wire_error(value: object) -> None:
    decode_or_refuse(REGISTRY, msgpack.packb(value))


@FUZZ
@given(
    version=st.sampled_from([1, 1, 1, 2, "1", None]),
    kind=kinds,
    request_id=st.sampled_from([0, 1, 2**64 - 1, -1, "0", None]),
    body=st.dictionaries(field_names, msgpack_values, max_size=6) | msgpack_values,
)
def test_frames_that_are_almost_right_are_decoded_or_refused_with_a_wire_error(
    version: object, kind: str, request_id: object, body: object
) -> None:
    data = msgpack.packb({"v": version, "k": kind, "i": request_id, "b": body})

    frame = decode_or_refuse(REGISTRY, data)

    if frame is not None:  # what was accepted is a real message, and travels again unchanged
        again = REGISTRY.decode(REGISTRY.encode(frame.message, request_id=frame.request_id), max_size=MAX_SIZE)
        assert again.request_id == frame.request_id
        assert repr(again.message) == repr(frame.message)  # repr, not ==: NaN is not equal to itself


GOOD_FRAMES: Final = [
    REGISTRY.encode(Everything(text="t", number=5, names=("a", "b"), table=(("k", 1),), leaf=Leaf(name="l"),
                               leaves=(OtherLeaf(size=2),), either="x"), request_id=3),
    REGISTRY.encode(Tree(name="r", children=(Tree(name="a"), Tree(name="b", children=(Tree(name="c"),))))),
]


@FUZZ
@given(
    original=st.sampled_from(GOOD_FRAMES),
    damage=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1,
                    max_size=5),
    cut=st.integers(min_value=0),
)
def test_damaged_copies_of_real_frames_are_decoded_or_refused_with_a_wire_error(
    original: bytes, damage: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(original)
    for position, byte in damage:
        data[position % len(data)] = byte

    decode_or_refuse(REGISTRY, bytes(data[: len(data) - cut % len(data)]))
