"""The rebuild's fast paths against their slow, obviously correct references.

- ``ledger.accepted._builder`` builds a statement's models as pydantic's
  ``model_construct`` does, and as ``Statement.parse`` validates them;
- ``projections.base._table_lines`` writes a table's digest text as canonical_bytes
  writes each row (orjson's JSON where it applies), for SQLite's rows and
  PostgreSQL's dict rows;
- ``projections.base.dumps`` refuses and writes what canonical_bytes does, for
  containers whose members mix every JSON type (its checks go member type by type).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ledger.accepted import _builder, accepted_statement
from ledger.application import Ledger
from ledger.canonical import MAX_SAFE_INTEGER, JSONRefused, canonical_bytes
from ledger.scenario import kota_metro
from ledger.statements import BODIES, Statement, StatementModel
from projections import base
from projections.base import _plain, _table_lines, dumps
from projections.runner import Projector


def model_fields(model: BaseModel) -> tuple[Any, ...]:
    """Everything of a model a projection can see, field order included."""
    return (type(model), model, list(vars(model)), model.model_fields_set, model.model_dump(),
            model.model_dump(exclude_none=True), model.__pydantic_extra__,
            model.__pydantic_private__)  # fmt: skip


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    return [item.envelope.payload for item in kota_metro().schedule()]


def test_accepted_statements_equal_the_validated_ones(payloads: list[bytes]) -> None:
    types = set()
    for payload in payloads:
        fast = accepted_statement(payload)
        slow = Statement.parse(json.loads(payload), payload=payload, digest=fast.digest)
        assert model_fields(fast.model) == model_fields(slow.model)
        assert model_fields(fast.body) == model_fields(slow.body)
        assert (fast.payload, fast.region, fast.refs) == (slow.payload, slow.region, slow.refs)
        types.add(fast.type)
    assert len(types) >= 10


def constructed(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``model.model_construct(**data)`` with its nested models constructed too."""
    values = dict(data)
    for name, field in model.model_fields.items():
        many = get_origin(field.annotation) is list
        inner = get_args(field.annotation)[0] if many else field.annotation
        if name in values and isinstance(inner, type) and issubclass(inner, BaseModel):
            value = values[name]
            values[name] = (
                [constructed(inner, v) for v in value] if many else constructed(inner, value)
            )
    return model.model_construct(**values)


def test_built_models_equal_model_construct(payloads: list[bytes]) -> None:
    """With every optional field given and with none (defaults filled in, copied)."""
    for payload in payloads:
        value = json.loads(payload)
        body_model = BODIES[value["type"]]
        required = {
            k: v for k, v in value["body"].items() if body_model.model_fields[k].is_required()
        }
        for model, data in [
            (StatementModel, value),
            (body_model, value["body"]),
            (body_model, required),
        ]:
            build = _builder(model)
            assert build is not None
            assert model_fields(build(dict(data))) == model_fields(constructed(model, data))


def test_mutable_defaults_are_not_shared() -> None:
    build = _builder(BODIES["logistics.dispatched"])
    assert build is not None
    data = {"region": "18.72", "receiver": "x", "direction": "outbound", "items": {"ink": 1}}
    first, second = build(data), build(data)
    assert first.seals == [] and first.seals is not second.seals


# Rows as the databases give them: text (some of it not ASCII), integers in and out of
# JSON's safe range, NULLs, and now and then a boolean or a blob.
cell = (
    st.none()
    | st.integers(-(2**60), 2**60)
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(max_size=6)
    | st.text(alphabet="abc-:", max_size=6)
    | st.booleans()
    | st.binary(max_size=3)
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[str], list[list[Any]]]:
    table = draw(st.sampled_from(["v_x", "v_\u00e9"]))
    names = sorted(
        draw(st.sets(st.sampled_from(["a", "b", "id", "\u00e9t\u00e9", "z"]), min_size=1))
    )
    # text made of what lines begin and end with, so that '],["v_x",' turns up inside values
    seams = st.text(alphabet='[]{},"\\\nv_x', max_size=12) | st.sampled_from(['],["v_x",{"a":', '\\"],["v_x",'])
    column = st.sampled_from(
        [cell, st.text(alphabet="xyz", max_size=4), st.none() | st.integers(0, 9), seams]
    )
    kinds = [draw(column) for _ in names]
    rows = draw(st.lists(st.tuples(*kinds).map(list), max_size=6))
    return table, names, rows


def row_by_row(table: str, names: list[str], rows: list[list[Any]]) -> bytes | str:
    """The digest text as defined: canonical_bytes([table, row]) and a newline per row."""
    try:
        return b"".join(
            canonical_bytes([table, dict(zip(names, _plain(row), strict=True))]) + b"\n"
            for row in rows
        )
    except JSONRefused:
        return "refused"


def test_text_orjson_refuses_goes_where_canonical_bytes_says() -> None:
    """A lone surrogate (never in an accepted statement) in a view value or a row."""
    for value in ("\ud800", {"a": ["x", "\udfff"]}):
        try:
            expected = canonical_bytes(value).decode("utf-8")
        except (JSONRefused, UnicodeError) as error:
            expected = type(error).__name__
        try:
            found = dumps(value)
        except (JSONRefused, UnicodeError) as error:
            found = type(error).__name__
        assert found == expected
    rows = [["ok", 1], ["\ud800", 2]]
    with pytest.raises(JSONRefused, match="lone surrogate"):
        _table_lines("v_x", ["a", "b"], rows)
    assert row_by_row("v_x", ["a", "b"], rows) == "refused"


@given(tables(), st.booleans())
def test_a_tables_digest_text_is_its_rows_lines(found: tuple[str, list[str], list[list[Any]]],
                                               as_dicts: bool) -> None:  # fmt: skip
    table, names, rows = found
    given_rows: list[Any] = (
        [dict(zip(names, row, strict=True)) for row in rows] if as_dicts else rows
    )
    try:
        text: bytes | str = _table_lines(table, names, given_rows)
    except JSONRefused:
        text = "refused"
    assert text == row_by_row(table, names, rows)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False)
    | st.text(max_size=4) | st.binary(max_size=2),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner, max_size=4),
    max_leaves=16,
)  # fmt: skip


@given(json_values)
def test_view_json_of_mixed_containers_is_canonical_json(value: Any) -> None:
    try:
        expected = canonical_bytes(value).decode("utf-8")
    except (JSONRefused, TypeError, ValueError):
        expected = "refused"
    try:
        found = dumps(value)
    except (JSONRefused, TypeError, ValueError):
        found = "refused"
    assert found == expected


def test_view_json_nested_past_the_depth_limit_is_refused_as_canonical_json_refuses() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    with pytest.raises(JSONRefused):
        canonical_bytes(deep)
    with pytest.raises(JSONRefused):
        dumps(deep)


@pytest.fixture
def projector(tmp_path: Path) -> Iterator[Projector]:
    """Kota Metro's first 120 statements recorded (SQLite) and projected."""
    scenario = kota_metro()
    ledger = Ledger(database_url=f"sqlite:///{tmp_path / 'x.sqlite'}", origin="saksi.test/log",
                    genesis=scenario.genesis, log_key=Ed25519PrivateKey.generate())  # fmt: skip
    try:
        for item in list(scenario.schedule())[:120]:
            ledger.submit(item.envelope)
        projector = Projector(ledger)
        projector.catch_up()
        yield projector
    finally:
        ledger.close()


def test_a_rebuild_leaves_the_connections_secure_delete_as_it_found_it(projector: Projector) -> None:
    """Clearing drops rows without zeroing them (Sql.deleting_plainly), and only there."""
    with projector.sql(commit=True) as sql:
        before = sql.one("PRAGMA secure_delete")[0]
        for mode, reads in (("1", 1), ("0", 0), ("FAST", 2)):  # whatever the connection was set to
            sql.run(f"PRAGMA secure_delete = {mode}")
            with sql.deleting_plainly():
                assert sql.one("PRAGMA secure_delete")[0] == 0
            assert sql.one("PRAGMA secure_delete")[0] == reads
        sql.run(f"PRAGMA secure_delete = {before}")
    digests = projector.status()
    assert projector.rebuild() == digests
    with projector.sql(commit=True) as sql:
        assert sql.one("PRAGMA secure_delete")[0] == before


def reference_digest(sql: Any, projection: Any, size: int) -> str:
    """A projection's digest as defined: sha256 of "name\\nsize\\n" and, table by table (by
    name), every row in primary key order as canonical_bytes([table, row]) and a newline."""
    hasher = hashlib.sha256(f"{projection.name}\n{size}\n".encode())
    for table, (_, order) in sorted(projection.tables.items()):
        cursor = sql.run(f"SELECT * FROM {table} ORDER BY {order}").cursor
        names = [c[0] for c in cursor.description]
        for row in cursor.fetchall():
            hasher.update(canonical_bytes([table, dict(zip(names, _plain(row), strict=True))]) + b"\n")
    return "sha256:" + hasher.hexdigest()


def test_digests_read_a_table_in_chunks_and_equal_the_definition(
    projector: Projector, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = projector.status()
    monkeypatch.setattr(base, "DUMP_ROWS", 7)  # tables of 120 entries span many chunks
    assert projector.status() == whole
    with projector.sql() as sql:
        assert [reference_digest(sql, p, s.size) for p, s in zip(projector.projections, whole, strict=True)] \
            == [s.digest for s in whole]  # fmt: skip
