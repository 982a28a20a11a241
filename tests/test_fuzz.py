"""Fuzzing the HTTP API from its own OpenAPI document with schemathesis: for every
operation, valid and invalid requests generated from the document; no response
may be a 5xx, and every response must match the document (status code, content
type, headers, body schema).

A short, derandomized run lives here (``EXAMPLES`` per operation and mode, well
under a minute); ``python -m bench.stress fuzz`` runs the same ``fuzz`` against a
real ``saksi serve`` with more than 1,000 cases.

The document is fuzzed as served, except that schema references it cannot
resolve are repaired first (``repaired``), so that the operations they break are
fuzzed all the same; ``test_the_openapi_document_has_no_dangling_refs`` reports
them.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import re
import shutil
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks as core_checks
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from api.app import create_app
from api.settings import Settings

EXAMPLES = 15  # per operation and generation mode, in the test suite
STREAM = "GET /v1/events/stream"  # never ends: read for STREAM_SECONDS, with fewer examples
STREAM_SECONDS = 0.3
CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


# ---------------------------------------------------------------- the document


def openapi_document() -> dict[str, Any]:
    """The document the app serves at /openapi.json (no ledger needed to build it)."""
    return create_app(Settings(home=Path("unused"))).openapi()


def dangling_refs(document: dict[str, Any]) -> dict[str, list[str]]:
    """Operation label → the local ``$ref``s in it that do not resolve in ``document``."""
    found: dict[str, list[str]] = {}

    def resolves(ref: str) -> bool:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def walk(node: Any, label: str) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#") and not resolves(ref):
                found.setdefault(label, []).append(ref)
            for value in node.values():
                walk(value, label)
        elif isinstance(node, list):
            for value in node:
                walk(value, label)

    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            walk(operation, f"{method.upper()} {path}")
    return found


def repaired(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with inline JSON Schema ``$defs`` hoisted into components/schemas and
    their ``#/$defs/X`` references pointed there (what pydantic's standalone schemas need
    inside an OpenAPI document)."""
    fixed = copy.deepcopy(document)
    components = fixed.setdefault("components", {}).setdefault("schemas", {})

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, definition in node.pop("$defs", {}).items():
                components.setdefault(name, definition)
            if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/$defs/"):
                node["$ref"] = "#/components/schemas/" + node["$ref"].removeprefix("#/$defs/")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(fixed["paths"])
    return fixed


OPERATIONS = [f"{method.upper()} {path}" for path, ops in openapi_document()["paths"].items() for method in ops]


# ---------------------------------------------------------------- fuzzing


@dataclass
class OperationReport:
    """What fuzzing one operation found."""

    label: str
    cases: int = 0
    with_body: int = 0  # cases that carried a generated request body
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)  # failure title → first example (with curl)
    client_errors: int = 0  # cases the HTTP client itself could not send (e.g. non-Latin-1 headers)
    seconds: float = 0.0

    def note_failure(self, title: str, example: str) -> None:
        self.failures.setdefault(title, example)


def load_schema(app: Any, *, base_url: str | None = None) -> Any:
    """The repaired document of ``app``, bound to ``app`` in-process (ASGI) or to a real
    server at ``base_url``."""
    schema = schemathesis.openapi.from_dict(repaired(app.openapi()))
    if base_url is None:
        schema.app = app
        schema.location = "/openapi.json"
    else:
        schema.location = base_url + "/openapi.json"
    return schema


def fuzz_operation(
    schema: Any, label: str, *, examples: int, derandomize: bool = True, seed: int | None = None,
    base_url: str | None = None,
) -> OperationReport:  # fmt: skip
    """Fuzz one operation in both generation modes; never raises for what it finds."""
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    report = OperationReport(label)
    stream = label == STREAM
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as leaks:
        warnings.simplefilter("always", ResourceWarning)
        _fuzz_modes(operation, report, examples=examples, derandomize=derandomize, seed=seed, base_url=base_url,
                    stream=stream)
        gc.unfreeze()  # what the write path froze (ledger.collector.settle) is looked at too
        gc.collect()  # what the app left unclosed shows up now, attributed to this operation
    for leak in leaks:
        report.note_failure("the app leaked a resource: " + re.sub(r" (object )?at 0x[0-9a-f]+", "", str(leak.message)),
                            str(leak.message))
    report.seconds = time.monotonic() - started
    return report


def _fuzz_modes(operation: Any, report: OperationReport, *, examples: int, derandomize: bool, seed: int | None,
                base_url: str | None, stream: bool) -> None:  # fmt: skip
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        quick = stream and mode == GenerationMode.POSITIVE  # each valid stream request waits STREAM_SECONDS
        @settings(max_examples=max(2, examples // 5) if quick else examples, deadline=None, database=None,
                  derandomize=derandomize, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            try:
                response = case.call(base_url=base_url, timeout=STREAM_SECONDS if stream else 30)
            except Exception as error:  # noqa: BLE001 - sorted below
                if isinstance(error, UnicodeError | ValueError) and not raised_by_the_app(error):
                    report.client_errors += 1  # the HTTP client cannot even send it (e.g. a non-Latin-1 header)
                    return
                report.cases += 1  # a dropped connection, or an exception escaping the app in-process
                report.note_failure(f"no response: {type(error).__name__}",
                                    f"{case.as_curl_command()}\n{error!r}"[:1500])  # fmt: skip
                return
            report.cases += 1
            report.with_body += not isinstance(case.body, NotSet)
            report.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                for failure in group.exceptions:
                    report.note_failure(f"{failure.title} ({response.status_code})", str(group)[:1500])

        if seed is not None:
            from hypothesis import seed as fixed_seed

            one = fixed_seed(seed)(one)
        with contextlib.suppress(Unsatisfiable):  # no request of this mode exists (e.g. no invalid
            one()  # request for a parameterless GET)


def raised_by_the_app(error: BaseException) -> bool:
    """Whether ``error`` came out of the application (in-process) rather than the client."""
    frames = traceback.extract_tb(error.__traceback__)
    return any(f"{sep}{part}{sep}" in frame.filename for frame in frames
               for part in ("starlette", "fastapi", "api") for sep in "/")  # fmt: skip


def summary(reports: list[OperationReport]) -> str:
    cases = sum(r.cases for r in reports)
    statuses = sum((r.statuses for r in reports), Counter())
    failing = [r for r in reports if r.failures]
    return (f"{cases} cases over {len(reports)} operations; statuses {dict(sorted(statuses.items()))}; "
            f"{len(failing)} operations with failures")  # fmt: skip


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory, demo_template: Path) -> Iterator[Any]:
    from schemathesis.python import asgi

    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(demo_template, home)
    yield load_schema(create_app(Settings(home=home)))
    asgi.shutdown_lifespans()  # closes the app's ledger


def test_the_openapi_document_has_no_dangling_refs() -> None:
    """Every ``$ref`` in the document resolves: otherwise generators, validators and
    client generators cannot read the operation (schemathesis drops its request body)."""
    assert dangling_refs(openapi_document()) == {}


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_operation(schema: Any, label: str) -> None:
    report = fuzz_operation(schema, label, examples=EXAMPLES)
    assert report.cases > 0
    if schema[label.split(" ", 1)[1]][label.split(" ", 1)[0]].body:
        assert report.with_body > 0, f"{label}: no request body was ever generated"
    assert not report.failures, "\n\n".join(f"{title}\n{example}" for title, example in report.failures.items())
    assert not any(status >= 500 for status in report.statuses), report.statuses

