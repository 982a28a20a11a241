"""Our fast canonical JSON path equals the rfc8785 package on every value in our domain."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_bytes

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
