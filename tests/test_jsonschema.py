"""The published JSON Schemas and docs/statements.md are what the models generate:
edit ``ledger/statements.py``, run ``python -m ledger.jsonschema``, ship both."""

from __future__ import annotations

import json

from ledger.jsonschema import DOCS, SCHEMA_DIR, reference, render, schemas
from ledger.statements import BODIES


def test_every_statement_type_has_a_published_schema_and_no_stale_one_remains() -> None:
    shipped = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert shipped == {"statement.json"} | {f"{t}.json" for t in BODIES}


def test_the_shipped_schemas_equal_the_models() -> None:
    for name, schema in schemas().items():
        shipped = (SCHEMA_DIR / name).read_text("utf-8")
        assert shipped == render(schema), f"ledger/schemas/{name} is stale: run python -m ledger.jsonschema"
        assert json.loads(shipped)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_field_reference_equals_the_models() -> None:
    assert DOCS.read_text("utf-8") == reference(), "docs/statements.md is stale: run python -m ledger.jsonschema"


def test_the_schemas_say_what_the_models_refuse() -> None:
    """Spot checks that the generated schemas carry the bounds the models enforce."""
    dispatched = schemas()["logistics.dispatched.json"]
    assert dispatched["additionalProperties"] is False
    seals = dispatched["properties"]["seals"]
    assert seals["maxItems"] == 64 and seals["items"]["maxLength"] == 200
