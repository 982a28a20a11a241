"""Statements the ledger has already accepted, built from their payloads without
validating them again.

The write path (and the audit, before it uses this) parsed every accepted envelope
strictly, checked its payload canonical and validated its statement. A statement is
built here from its payload with the same models holding the same values as
``Statement.parse`` builds (the models' validators only check, they never change a
value), as ``model_construct`` builds them but in a few dict operations
(``_builder``); the tests compare it with both on every statement type of a full
scenario.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, get_args, get_origin

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper
from pydantic import BaseModel

from ledger.envelope import statement_digest
from ledger.statements import BODIES, Statement, StatementModel


def record_state(mapper: Mapper[Any], state: bytes) -> Any:
    """A stored ``Record.Accepted`` event's state decoded as ``mapper.to_domain_event``
    decodes it (cipher, compressor, transcoder), without making the event. Its envelope
    and ``recorded_at`` hold only JSON's own types (SPEC §2: an envelope is exactly its
    fields, all text), which JSONTranscoder decodes as json.loads does, and orjson
    faster; JSONTranscoder's hook on every object is for the event's other fields.
    Raises whatever the cipher, the compressor or the decoder raise."""
    if mapper.cipher:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor:
        state = mapper.compressor.decompress(state)
    if type(mapper.transcoder) is JSONTranscoder:
        return orjson.loads(state)
    return mapper.transcoder.decode(state)


def accepted_statement(payload: bytes, value: dict[str, Any] | None = None) -> Statement:
    """The statement of an accepted payload, as ``Statement.parse`` gave it when it
    was accepted, without validating it again. Requires a payload the ledger accepted;
    ``value``, when given, is the payload decoded (and is not changed)."""
    if value is None:
        value = orjson.loads(payload)  # what json.loads gives for JSON the write path accepted
    statement, body = _builder(StatementModel), _builder(BODIES[value["type"]])
    if statement is None or body is None:  # shapes _builder does not know
        return Statement.parse(value, payload=payload, digest=statement_digest(payload))
    model = statement(value)
    return Statement(model, body(model.body), payload, statement_digest(payload))


_setattr = object.__setattr__
_IMMUTABLE = (str, int, bool, float, bytes, type(None))  # defaults shared, not copied


@cache
def _builder(model: type[BaseModel]) -> Callable[[dict[str, Any]], Any] | None:
    """A function building ``model`` from data it validated as ``model.model_construct(**data)``
    does (the same ``__dict__``, in field order, defaults filled in, the same fields set),
    nested models included, in a few dict operations instead of model_construct's walk
    over every field. None for shapes it does not know: a field holding models other than
    as a model or a list of them (a union, a dict …), aliases, ``model_post_init``, a root
    model, extra fields allowed."""
    if (model.__pydantic_post_init__ or model.__pydantic_root_model__
            or model.model_config.get("extra") == "allow"):  # fmt: skip
        return None
    template: dict[str, Any] = {}  # every field in order: its default, or None while required
    copied: list[tuple[str, Any]] = []  # fields whose default is built afresh for each instance
    nesting: list[tuple[str, bool, Callable[[dict[str, Any]], Any]]] = []
    for name, field in model.__pydantic_fields__.items():
        if field.alias not in (None, name) or field.validation_alias not in (None, name):
            return None
        many = get_origin(field.annotation) is list
        inner = get_args(field.annotation)[0] if many else field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            nested = _builder(inner)
            if nested is None:
                return None
            nesting.append((name, many, nested))
        elif _holds_model(field.annotation):
            return None
        template[name] = None
        if not field.is_required():
            if field.default_factory is None and isinstance(field.default, _IMMUTABLE):
                template[name] = field.default
            else:
                copied.append((name, field))

    def build(data: dict[str, Any]) -> Any:
        values = template.copy()
        values.update(data)  # validated data: every required field, no others; order kept
        for name, field in copied:
            if name not in data:
                values[name] = field.get_default(call_default_factory=True, validated_data=values)
        for name, many, nested in nesting:
            if name in data:
                values[name] = [nested(v) for v in data[name]] if many else nested(data[name])
        instance = model.__new__(model)
        _setattr(instance, "__dict__", values)
        _setattr(instance, "__pydantic_fields_set__", set(data))
        _setattr(instance, "__pydantic_extra__", None)
        _setattr(instance, "__pydantic_private__", None)
        return instance

    return build


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(arg) for arg in get_args(annotation))
