"""Rendering dashboard pages: the Jinja2 environment, its filters, and ``page()``,
which renders a template in the request's language and remembers an explicit
``?lang=`` choice in a cookie."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from api.web import charts, i18n
from ledger import regions
from ledger.statements import parse_time

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
COOKIE_AGE = 365 * 24 * 3600


@pass_context
def when(context: Any, value: str | int | None) -> Markup:
    """An RFC 3339 time (or UNIX seconds) as ``26 Nov 2024, 19:07 UTC`` in a ``<time>``."""
    if value is None or value == "":
        return Markup("–")
    moment = datetime.fromtimestamp(value, UTC) if isinstance(value, int) else parse_time(value)
    t: i18n.Translator = context["t"]
    text = f"{moment.day} {t.label('month', str(moment.month))} {moment.year}, {moment:%H:%M} UTC"
    exact = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Markup(f'<time datetime="{exact}" title="{exact}">{escape(text)}</time>')


@pass_context
def day(context: Any, value: str) -> str:
    """An ISO date ``2024-11-26`` as ``26 Nov 2024``."""
    year, month, date = (int(part) for part in value[:10].split("-"))
    return f"{date} {context['t'].label('month', str(month))} {year}"


def duration(seconds: float) -> str:
    """A short human duration: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"


@pass_context
def gap(context: Any, hop: dict[str, Any], threshold: int = 60) -> str:
    """"recorded 3 h after signing" when a hop's recorded time trails its signed time by
    more than ``threshold`` seconds (statements signed offline), else ''."""
    seconds = (parse_time(hop["recorded_at"]) - parse_time(hop["issued_at"])).total_seconds()
    return context["t"]("gap", gap=duration(seconds)) if seconds > threshold else ""


@pass_context
def number(context: Any, value: int) -> str:
    return context["t"].number(value)


@pass_context
def label(context: Any, value: str, group: str) -> str:
    return context["t"].label(group, value)


def short(value: str, keep: int = 12) -> Markup:
    """A long hash or key shortened to ``keep`` characters, whole in its title."""
    text = value.removeprefix("sha256:")
    if len(text) <= keep + 1:
        return Markup(f"<code>{escape(value)}</code>")
    return Markup(f'<code class="hash" title="{escape(value)}">{escape(text[:keep])}…</code>')


environment = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
    trim_blocks=True, lstrip_blocks=True,
)  # fmt: skip
environment.filters.update(when=when, day=day, gap=gap, number=number, label=label, short=short,
                           region=regions.name, level=regions.level)  # fmt: skip
environment.globals.update(palette=charts.PALETTE, COUNTRY=regions.COUNTRY)


def switch_url(request: Request, lang: str) -> str:
    """This page's URL in another language."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] + [("lang", lang)]
    return f"{request.url.path}?{urlencode(query)}"


def page(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` in the request's language; ``?lang=`` also sets the cookie."""
    lang = i18n.language(request)
    t = i18n.Translator(lang)
    html = environment.get_template(template).render(
        request=request, lang=lang, t=t, switch={code: switch_url(request, code) for code in i18n.LANGUAGES},
        **context,
    )  # fmt: skip
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Vary"] = "Cookie"
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, lang, max_age=COOKIE_AGE, samesite="lax")
    return response


def not_found(request: Request, what: str) -> HTMLResponse:
    """The friendly 404 page: what was not found, and where to go from here."""
    return page(request, "not_found.html", status_code=404, what=what, nav=None)
