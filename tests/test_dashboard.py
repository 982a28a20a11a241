"""The auditor's dashboard, over the Kota Metro demo.

First every page through TestClient (fast): it renders, in both languages, with
the figures the API gives; unknown ids get a friendly 404 page. Then in a real
browser — Playwright driving Debian's Chromium against a real ``saksi serve
--demo`` — every page renders without console errors, drill-down and search work
by clicking, a downloaded receipt verifies, the home page's commands run as
written, and the screenshots in ``docs/screenshots/`` are retaken. The browser
tests fail (never skip) when Playwright or Chromium is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

with warnings.catch_warnings():
    # starlette.testclient warns at import that it prefers httpx2 (not installed here).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from ledger import notes

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

DISCREPANCY = "out.18.72.04.1002.004"  # the demo's short-delivered TPS consignment (50 mayoral ballots)
TPS = "18.72.01.1001.001"


# ---------------------------------------------------------------- the demo home




@pytest.fixture(scope="module")
def web(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("dashboard") / "home"
    shutil.copytree(demo_template, home, ignore=shutil.ignore_patterns(".complete"))
    with TestClient(create_app(Settings(home=home)), raise_server_exceptions=False) as client:
        yield client


def get(client: TestClient, path: str, lang: str = "id", **params: Any) -> httpx.Response:
    """A page in one language, without leaving a language cookie behind."""
    response = client.get(path, params={**params, "lang": lang}, follow_redirects=False)
    client.cookies.clear()
    return response


def hrefs(html: str, pattern: str) -> list[str]:
    return re.findall(rf'href="({pattern})"', html)


# ---------------------------------------------------------------- every page, both languages

NAV = {"id": ["Beranda", "Kesiapan", "Rantai Kustodi", "Komitmen", "Netralitas", "Cari"],
       "en": ["Home", "Readiness", "Custody", "Commitments", "Neutrality", "Search"]}  # fmt: skip

# path → (words in Indonesian, words in English, words in both)
PAGES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "/": (["Checkpoint terbaru", "Verifikasi sendiri"], ["Latest checkpoint", "Verify it yourself"],
          ["saksi.demo/kota-metro-2024", "witness-bawaslu", "witness-perludem", "saksi verify-receipt"]),
    "/readiness": (["Kesiapan logistik"], ["Logistics readiness"], ["Lampung", 'href="/readiness/18"']),
    "/readiness/18.72": (["lengkap sebelum H-1"], ["complete by H-1"],
                         ["Metro Pusat", "Metro Timur", 'href="/readiness/18.72.01"', "<svg"]),
    "/readiness/18.72.04.1002": (["Rincian per TPS"], ["By TPS"], ['href="/tps/18.72.04.1002.004"']),
    "/custody": (["Rantai kustodi"], ["Chain of custody"], [f'href="/custody/{DISCREPANCY}"']),
    f"/custody/{DISCREPANCY}": (["Selisih dilaporkan"], ["Discrepancy reported"], ["-50", "SEGEL-", ".tlog-proof"]),
    f"/tps/{TPS}": (["Linimasa serah terima"], ["Handover timeline"], [f"ret.{TPS}", f"out.{TPS}"]),
    "/commitments": (["Register komitmen"], ["Commitments register"], ["Pembagian sembako", "PDI Perjuangan"]),
    "/pledges": (["Register netralitas"], ["Neutrality register"], ["Teguran tertulis", "ASN Kota Metro"]),
    "/statement/390": (["Pernyataan #390"], ["Statement #390"],
                       ["logistics.discrepancy_reported", "/receipts/390.tlog-proof"]),
    "/actors/kpu-18.72": (["Mandat"], ["Mandates"], ["KPU Kota Metro", "out.18.72.01"]),
    "/search?q=Metro": (["Hasil untuk"], ["Results for"], ['href="/readiness/18.72"', "Kota Metro"]),
}  # fmt: skip


@pytest.mark.parametrize("lang", ["id", "en"])
@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_in_both_languages(web: TestClient, path: str, lang: str) -> None:
    base, _, query = path.partition("?")
    response = get(web, base, lang, **dict(p.split("=") for p in query.split("&") if p))
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f'<html lang="{lang}">' in html
    indonesian, english, both = PAGES[path]
    for word in NAV[lang] + (indonesian if lang == "id" else english) + both:
        assert word in html, f"{path} ({lang}) lacks {word!r}"
    assert "Traceback" not in html


def test_the_language_is_kept_in_a_cookie(web: TestClient) -> None:
    chosen = web.get("/readiness", params={"lang": "en"})
    assert "saksi_lang=en" in chosen.headers["set-cookie"]
    web.cookies.clear()
    assert '<html lang="id">' in web.get("/readiness").text  # Indonesian by default
    remembered = web.get("/readiness", headers={"Cookie": "saksi_lang=en"})
    assert '<html lang="en">' in remembered.text
    assert 'href="/readiness?lang=id"' in remembered.text  # the switch back


@pytest.mark.parametrize("path", [
    "/custody/no-such-consignment", "/tps/18.72.01.1001.999", "/tps/18.72", "/statement/99999",
    "/statement/abc", "/statement/%C2%B2", "/receipts/%C2%B2.tlog-proof", "/actors/nobody", "/readiness/99", "/readiness/not-a-code", "/receipts/99999.tlog-proof",
])  # fmt: skip
def test_unknown_ids_get_a_friendly_404_page(web: TestClient, path: str) -> None:
    response = get(web, path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Tidak ditemukan" in response.text and 'action="/search"' in response.text
    assert "Not found" in get(web, path, "en").text


def test_pages_are_light_and_need_nothing_from_elsewhere(web: TestClient) -> None:
    for path in PAGES:
        html = get(web, path.partition("?")[0]).text
        assert len(html.encode()) < 60_000, f"{path} weighs {len(html.encode())} bytes"
        assert not re.search(r'(src|href)="(https?:)?//', html), f"{path} loads from another host"
        assert "<script" not in html
    css = web.get("/static/saksi.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert len(css.content) < 20_000
    assert web.get("/static/favicon.svg").status_code == 200
    assert not {"/", "/readiness", "/search"} & set(web.get("/openapi.json").json()["paths"])


# ---------------------------------------------------------------- what the pages say


def test_readiness_figures_are_the_apis_and_drill_down_to_a_tps(web: TestClient) -> None:
    path, code = "/readiness", "ID"
    while True:
        html = get(web, path).text
        api = web.get(f"/v1/regions/{code}/readiness").json()
        assert f"{api['tps']} TPS" in html
        children = html.split('data-testid="children"', 1)[1].split("</ul>", 1)[0]
        names = re.findall(r'class="region-name" href="[^"]+">([^<]+)<', children)
        assert names == [c["name"] for c in api["children"]]
        tps_links = hrefs(children, r"/tps/[0-9.]+")
        if tps_links:
            break
        path = hrefs(children, r"/readiness/[0-9.]+")[0]
        code = path.rsplit("/", 1)[1]
    assert code == "18.72.01.1001"  # province, city, kecamatan, village
    tps_page = get(web, tps_links[0]).text
    assert "Linimasa serah terima" in tps_page
    assert web.get("/readiness/18.72.01.1001.001", follow_redirects=False).headers["location"] == f"/tps/{TPS}"


def test_discrepancies_are_highlighted(web: TestClient) -> None:
    html = get(web, "/readiness/18.72").text
    assert html.count("⚠ Ada selisih") >= 2  # Metro Timur and Metro Selatan, and the problem list
    assert 'class="attention"' in html
    page = get(web, f"/custody/{DISCREPANCY}").text
    assert '<tr class="flag"><th scope="row">Surat suara wali kota</th><td class="num">609</td>' in page
    assert "kekurangan" in page and "Kondisi: tidak lengkap" in page


def test_a_consignment_shows_every_hop_with_its_statement_and_receipt(web: TestClient) -> None:
    found = web.get(f"/v1/consignments/{DISCREPANCY}").json()
    html = get(web, f"/custody/{DISCREPANCY}").text
    hops = [found["dispatch"], found["receipt"], *found["witnesses"], *found["discrepancies"]]
    for hop in hops:
        assert f'href="/statement/{hop["index"]}"' in html
        assert f'href="/receipts/{hop["index"]}.tlog-proof"' in html
    assert found["parent"] in html and f"ret.{found['region']}" in html  # the chain, out and back
    assert "PPS Tejosari" in html and "KPPS TPS 004 Tejosari" in html and "PTPS TPS 004 Tejosari" in html


def test_a_tps_timeline_runs_out_and_back_in_log_order(web: TestClient) -> None:
    tree = web.get(f"/v1/tps/{TPS}/custody").json()
    flat: list[dict[str, Any]] = []
    stack = list(tree["hops"])
    while stack:
        node = stack.pop()
        flat.append(node)
        stack += node["children"]
    ordered = [n["id"] for n in sorted(flat, key=lambda n: n["dispatch"]["index"])]
    html = get(web, f"/tps/{TPS}").text
    shown = re.findall(r'<article class="hop [^"]+" id="([^"]+)"', html)
    assert shown == ordered and shown[0].startswith("out.") and shown[-1].startswith("ret.")
    assert "KPPS TPS 001 Metro" in html and "PTPS (pengawas TPS)" in html


def test_registers_filter_by_region_party_institution_and_words(web: TestClient) -> None:
    def shown(path: str, **params: str) -> int:
        return int(re.search(r'data-testid="count">(\d+)', get(web, path, **params).text)[1])

    assert shown("/commitments") == 3
    assert shown("/commitments", party="party-pdip") == 1  # endorsed by PDI-P
    assert shown("/commitments", party="paslon-18.72-2") == 1  # declared by pair 2
    assert shown("/commitments", region="Metro Pusat") == 3  # made for the city, which holds it
    assert shown("/commitments", region="18.71") == 0
    assert shown("/commitments", region="Atlantis") == 0
    assert shown("/commitments", kind="integrity_pact") == 0
    assert shown("/commitments", q="sembako") == 1  # words in a breach report's commitment
    assert shown("/pledges") == 5
    assert shown("/pledges", institution="asn") == 1
    assert shown("/pledges", region="18.72.01") == 5
    ruled = get(web, "/pledges", institution="asn").text
    assert "Lurah mengunggah dukungan" in ruled and "Terbukti" in ruled and "Teguran tertulis" in ruled


def test_a_statement_shows_signer_key_index_leaf_hash_and_receipt(web: TestClient) -> None:
    entry = web.get("/v1/log/entries/390").json()
    proof = web.get("/v1/log/proofs/inclusion", params={"index": 390}).json()
    signer = web.get("/v1/actors/kpps-18.72.04.1002.004").json()
    html = get(web, "/statement/390").text
    assert proof["leaf_hash"] in html
    assert entry["envelope"]["signatures"][0]["keyid"] in html
    assert signer["keys"][0]["key"] in html and signer["name"] in html
    assert 'href="/statement/388"' in html  # the receipt it refers to
    receipt = web.get("/v1/log/receipts/390").text
    assert receipt.split("\n\n")[0] in html  # the receipt itself, up to its checkpoint


def test_a_receipt_downloads_as_a_file_that_verifies(web: TestClient) -> None:
    response = web.get("/receipts/390.tlog-proof")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="390.tlog-proof"'
    verified = notes.verify_receipt(response.text, log_key=web.get("/v1/log/key").text.strip())
    assert verified.index == 390


def test_search_finds_consignments_tps_actors_regions_and_entries(web: TestClient) -> None:
    assert f'href="/custody/{DISCREPANCY}"' in get(web, "/search", q=DISCREPANCY).text
    assert f'href="/tps/{TPS}"' in get(web, "/search", q=TPS).text
    assert 'href="/actors/kpu-18.72"' in get(web, "/search", q="KPU Kota").text
    metro = get(web, "/search", q="Metro").text
    assert 'href="/readiness/18.72"' in metro and 'href="/readiness/18.72.01.1001"' in metro
    assert "Metro Kibang" in metro and 'href="/readiness/18.07.10"' not in metro  # no TPS there: no link
    assert 'href="/statement/42"' in get(web, "/search", q="42").text
    assert "Tidak ditemukan apa pun" in get(web, "/search", q="zzzz-nothing").text
    assert get(web, "/search", q="\u00b2").status_code == 200  # a digit to str.isdigit, not to int()


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def server(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``saksi serve --demo`` on a free port, in a fresh directory (holding a
    copy of the session's demo home, which ``--demo`` reuses instead of rebuilding)."""
    cwd = tmp_path_factory.mktemp("serve")
    shutil.copytree(demo_template, cwd / ".saksi-demo", ignore=shutil.ignore_patterns(".complete"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SAKSI_")}
    process = subprocess.Popen([str(BIN / "saksi"), "serve", "--demo", "--port", str(port)], cwd=cwd,
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/v1/log/key", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"saksi serve --demo did not start: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright: pip install -e '.[test]'")
    if not CHROMIUM.exists():
        pytest.fail(f"the browser tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Tab:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, base: str, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport, accept_downloads=True, base_url=base)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def visit(self, path: str) -> Any:
        response = self.page.goto(path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        return self.page

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


@pytest.fixture
def phone(browser: Any, server: str) -> Iterator[Tab]:
    tab = Tab(browser, server, PHONE)
    yield tab
    tab.context.close()


def test_browser_every_page_renders_without_errors_and_screenshots(browser: Any, server: str, phone: Tab) -> None:
    for path in [*PAGES, "/?lang=en", "/readiness?lang=id", "/custody?after=out.18.72.03"]:
        page = phone.visit(path)
        assert page.locator("main h1").count() == 1, path
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], f"{path} scrolls sideways"
    phone.assert_clean()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"home": "/", "readiness": "/readiness/18.72.04", "custody": f"/custody/{DISCREPANCY}#{DISCREPANCY}",
             "registers": "/pledges#pledge-asn-18.72", "statement": "/statement/390"}  # fmt: skip
    for name, path in shots.items():
        phone.visit(path).screenshot(path=SCREENSHOTS / f"{name}-phone.png")
    desktop = Tab(browser, server, DESKTOP)
    try:
        desktop.visit("/").screenshot(path=SCREENSHOTS / "home-desktop.png")
        desktop.assert_clean()
    finally:
        desktop.context.close()


def test_browser_drill_down_from_readiness_to_a_tps(phone: Tab) -> None:
    page = phone.visit("/readiness")
    for name in ["Lampung", "Kota Metro", "Metro Timur", "Tejosari"]:
        page.locator('[data-testid="children"]').get_by_role("link", name=name, exact=True).click()
        assert page.locator("main h1").inner_text().startswith(name)
    page.get_by_role("link", name="TPS 004 Tejosari", exact=True).first.click()
    assert page.url.endswith("/tps/18.72.04.1002.004")
    assert page.locator("article.hop").count() == 6  # out and back at kecamatan, village, TPS
    page.get_by_role("link", name=DISCREPANCY, exact=True).click()
    assert page.url.endswith(f"/custody/{DISCREPANCY}")
    phone.assert_clean()


def test_browser_search_by_region_name_and_consignment_id(phone: Tab) -> None:
    page = phone.visit("/")
    page.get_by_role("link", name="Cari", exact=True).click()
    page.get_by_label("ID kiriman, kode TPS, aktor, atau nama wilayah").fill("Metro")
    page.get_by_role("button", name="Cari").click()
    page.locator('[data-testid="results"]').get_by_role("link", name="Kota Metro", exact=True).click()
    assert page.url.endswith("/readiness/18.72")
    page.goto("/search")
    page.get_by_label("ID kiriman, kode TPS, aktor, atau nama wilayah").fill(DISCREPANCY)
    page.keyboard.press("Enter")
    page.locator('[data-testid="results"]').get_by_role("link", name=DISCREPANCY, exact=True).click()
    assert page.url.endswith(f"/custody/{DISCREPANCY}")
    page.get_by_role("link", name="EN", exact=True).click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Discrepancy reported" in page.locator("main").inner_text()
    phone.assert_clean()


def test_browser_downloads_a_receipt_that_verifies(phone: Tab, server: str, tmp_path: Path) -> None:
    page = phone.visit(f"/custody/{DISCREPANCY}")
    page.get_by_role("link", name="#390", exact=True).click()
    assert page.url.endswith("/statement/390")
    with page.expect_download() as caught:
        page.get_by_test_id("download").click()
    download = caught.value
    assert download.suggested_filename == "390.tlog-proof"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    log_key = httpx.get(f"{server}/v1/log/key").text.strip()
    receipt = notes.verify_receipt(target.read_text("utf-8"), log_key=log_key)
    assert receipt.index == 390
    assert page.get_by_test_id("leaf-hash").inner_text() == httpx.get(
        f"{server}/v1/log/proofs/inclusion", params={"index": 390}).json()["leaf_hash"]  # fmt: skip
    phone.assert_clean()


def test_browser_home_commands_run_as_written(phone: Tab, tmp_path: Path) -> None:
    commands = phone.visit("/").get_by_test_id("verify-commands").inner_text()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SAKSI_")}
    environment["PATH"] = f"{BIN}:{environment['PATH']}"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ok: entry 799" in result.stdout
    assert "ok: selective bundle" in result.stdout
