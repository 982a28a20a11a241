"""Our fast canonical JSON path equals the rfc8785 package on every value in our domain."""

from __future__ import annotations

import json

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import JSONRefused, canonical_bytes, loads_canonical, strict_loads

INTEGERS = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
VALUES = st.recursive(
    st.none() | st.booleans() | INTEGERS | TEXT,
    lambda children: st.lists(children) | st.dictionaries(TEXT, children),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_fast_path_equals_rfc8785(value: object) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_keys_sorted_by_utf16_units_not_code_points() -> None:
    # U+1F600 sorts before U+E000 in UTF-16 (a surrogate pair starts 0xD83D) but after it by code point.
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3}
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert canonical_bytes(value).index("\U0001f600".encode()) < canonical_bytes(value).index("\ue000".encode())


# ---------------------------------------------------------------- loads_canonical's fast path


def slow_verdict(payload: bytes) -> tuple[object, bool] | str:
    """The definition: parse strictly, then compare with the rfc8785 package's bytes."""
    try:
        value = strict_loads(payload)
    except JSONRefused as error:
        return f"refused: {error}"
    try:
        return value, rfc8785.dumps(value) == payload
    except rfc8785.CanonicalizationError:
        return value, False


def fast_verdict(payload: bytes) -> tuple[object, bool] | str:
    try:
        return loads_canonical(payload)
    except JSONRefused as error:
        return f"refused: {error}"


ASCII_TEXT = st.text(alphabet=st.characters(max_codepoint=127))
ASCII_VALUES = st.recursive(
    st.none() | st.booleans() | INTEGERS | ASCII_TEXT,
    lambda children: st.lists(children) | st.dictionaries(ASCII_TEXT, children),
    max_leaves=25,
)


def spellings(value: object) -> st.SearchStrategy[bytes]:
    """``value``'s canonical bytes, and other ways of writing (nearly) the same JSON."""
    canonical = rfc8785.dumps(value)
    return st.sampled_from([
        canonical,
        json.dumps(value).encode(),  # spaces, \\u escapes
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),  # keys unsorted
        canonical.replace(b"}", b',"k":1,"k":1}', 1),  # duplicate keys
        canonical.replace(b"1", b"1.0", 1), canonical.replace(b"1", b"1e0", 1),  # floats
        canonical.replace(b"1", b"19007199254740993", 1),  # beyond 2^53
        b" " + canonical, canonical + b"\n",
    ])  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(ASCII_VALUES.flatmap(spellings))
def test_loads_canonical_agrees_with_the_definition(payload: bytes) -> None:
    assert fast_verdict(payload) == slow_verdict(payload)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_loads_canonical_accepts_every_canonical_form(value: object) -> None:
    payload = rfc8785.dumps(value)
    assert loads_canonical(payload) == (value, True)


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_escaped_as_jcs_and_judged_alike(code: int) -> None:
    # The fast path leans on orjson escaping each ASCII character exactly as RFC 8785 does.
    for payload in (rfc8785.dumps({"k": chr(code)}), b'{"k":"\\u%04x"}' % code, b'{"k":"\\u%04X"}' % code):
        assert fast_verdict(payload) == slow_verdict(payload)
    assert orjson.dumps(chr(code)) == rfc8785.dumps(chr(code))


@pytest.mark.parametrize(
    "payload",
    [b"[" * 32 + b"]" * 32, b"[" * 33 + b"]" * 33, b"[" * 33 + b"1" + b"]" * 33, b'{"a":' * 40 + b"1" + b"}" * 40,
     b'"\\ud800"', b'["\\udc00",1]', b"9007199254740991", b"-9007199254740991", b"9007199254740992",
     b"123456789012345678901234567890", b'"\\/"', b'"1.5"', b'{"e":true,"f":false}', b"1E5", b"-0"],
)  # fmt: skip
def test_edges_judged_as_the_definition(payload: bytes) -> None:
    assert fast_verdict(payload) == slow_verdict(payload)


@pytest.mark.parametrize("digits", [17, 4300, 4301, 100_000])
@pytest.mark.parametrize("sign", ["", "-"])
def test_integers_of_any_length_are_refused_as_json(digits: int, sign: str) -> None:
    # int() raises ValueError past sys.get_int_max_str_digits() (4300): never let it out.
    payload = b'{"n":' + sign.encode() + b"9" * digits + b"}"
    for parse in (strict_loads, loads_canonical):
        with pytest.raises(JSONRefused, match="outside"):
            parse(payload)


def test_the_fast_path_decides_canonical_ascii_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path is taken (strict_loads never runs) for canonical ASCII payloads
    # (numbers of 16 digits and more go the slow way: they may pass 2^53-1).
    import ledger.canonical as module

    def refuse(data: object) -> object:
        raise AssertionError("strict_loads ran")

    monkeypatch.setattr(module, "strict_loads", refuse)
    value = {"a": [1, -900719925474099, True, None, "x\u0001\"y"], "b": {"c": ""}}
    assert loads_canonical(rfc8785.dumps(value)) == (value, True)
