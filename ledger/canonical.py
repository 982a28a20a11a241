"""RFC 8785 (JCS) canonical JSON, and the strict parser every input goes through.

SPEC §1: numbers are integers in [-(2^53-1), 2^53-1], floats are refused, and
every object is closed. The parser below refuses what JSON allows but we do
not: duplicate keys, floats, exponents, NaN/Infinity, out-of-range integers,
invalid UTF-8 and nesting deeper than ``MAX_DEPTH``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32


class JSONRefused(ValueError):
    """The input is not JSON we accept; the message says why."""


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 canonical bytes of ``value``.

    Raises JSONRefused for values JCS cannot represent (floats we refuse,
    integers beyond ±(2^53-1), non-string keys).

    Within our domain (integers only, no lone surrogates) JCS is exactly
    ``json.dumps`` with sorted keys, no whitespace and no ASCII escaping, as long
    as every object key is below U+E000 (Python sorts keys by code point, JCS by
    UTF-16 unit: they agree there). That fast path serves our own documents,
    whose keys are field names; anything else goes to the rfc8785 package, and
    the tests check both agree.
    """
    if _check_value(value, 0):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as error:
        raise JSONRefused(f"cannot canonicalise: {error}") from None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONRefused(f"duplicate key {key!r}")
        result[key] = value
    return result


def _int(text: str) -> int:
    # More than 16 digits (JSON writes no leading zeros) is beyond 2^53-1: refused before
    # int(), which raises ValueError past sys.get_int_max_str_digits() (4300).
    if len(text.lstrip("-")) > 16 or not -MAX_SAFE_INTEGER <= (value := int(text)) <= MAX_SAFE_INTEGER:
        raise JSONRefused(f"integer {text[:24]} is outside ±(2^53-1)")
    return value


def _float(text: str) -> Any:
    raise JSONRefused(f"number {text[:24]} is not an integer (floats are refused)")


def _constant(text: str) -> Any:
    raise JSONRefused(f"{text} is not JSON")


def strict_loads(data: bytes | str) -> Any:
    """Parse JSON strictly (see the module docstring). Raises JSONRefused."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JSONRefused(f"invalid UTF-8 at byte {error.start}") from None
    if data.startswith("\ufeff"):
        raise JSONRefused("a byte-order mark is not allowed")
    try:
        value = json.loads(
            data,
            object_pairs_hook=_pairs,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except RecursionError:
        raise JSONRefused(f"nesting deeper than {MAX_DEPTH}") from None
    except json.JSONDecodeError as error:
        raise JSONRefused(f"not JSON: {error.msg} at position {error.pos}") from None
    _check_value(value, 0)
    return value


def _check_value(value: Any, depth: int) -> bool:
    """Refuse what we never canonicalise; True when every key is below U+E000."""
    if depth > MAX_DEPTH:
        raise JSONRefused(f"nesting deeper than {MAX_DEPTH}")
    if isinstance(value, str):
        _check_text(value)
        return True
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise JSONRefused("integer outside ±(2^53-1)")
        return True
    if isinstance(value, float):
        raise JSONRefused("floats are refused")
    if isinstance(value, dict):
        simple = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise JSONRefused("object keys must be strings")
            _check_text(key)
            simple = _check_value(item, depth + 1) and simple and (key.isascii() or max(key) < "\ue000")
        return simple
    if isinstance(value, list | tuple):
        simple = True
        for item in value:
            simple = _check_value(item, depth + 1) and simple
        return simple
    raise JSONRefused(f"{type(value).__name__} is not a JSON value")


def _check_text(text: str) -> None:
    # Lone surrogates (from "\ud800" escapes) are not Unicode text and have no UTF-8 form.
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JSONRefused("a string holds a lone surrogate") from None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# Outside strings: a float (a digit then ".", "e" or "E") or an integer of 16 digits or
# more (2^53 - 1 has 16): the strict parser decides.
_NUMBER_TO_CHECK = re.compile(rb"[0-9][.eE]|[0-9]{16}")


def loads_canonical(payload: bytes) -> tuple[Any, bool]:
    """``payload``'s value, parsed strictly, and whether ``payload`` is exactly that
    value's RFC 8785 form. Raises JSONRefused as ``strict_loads`` does.

    The fast path proves both at once for an ASCII payload: orjson parses it, writes
    it back with sorted keys and no spaces, and the bytes come out the same. For ASCII
    text that form is RFC 8785's (keys sort alike by byte, code point and UTF-16 unit;
    orjson escapes every ASCII character as JCS does, which the tests check one by one),
    and equal bytes also rule out duplicate keys, whitespace and any other spelling.
    What orjson's round trip cannot see (floats, integers beyond ±(2^53-1), nesting
    deeper than MAX_DEPTH) is looked for in the text outside strings; where it may be,
    or the bytes differ, ``strict_loads`` and ``canonical_bytes`` decide, as always.
    """
    if payload.isascii():
        try:
            value = orjson.loads(payload)
            same = orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == payload
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            same = False
        if same:
            rest = _STRING.sub(b"", payload)
            if not _NUMBER_TO_CHECK.search(rest) and rest.count(b"[") + rest.count(b"{") <= MAX_DEPTH:
                return value, True
    value = strict_loads(payload)
    # An ASCII payload is walked once. If its value holds only ASCII text, its keys sort
    # alike by code point and by UTF-16 unit, so json.dumps writes the RFC 8785 form; if
    # it holds other text (from \u escapes), json.dumps writes that raw and the comparison
    # fails, as the RFC 8785 form (raw, never escaped) would.
    if payload.isascii():
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    else:
        canonical = canonical_bytes(value)
    return value, canonical == payload
