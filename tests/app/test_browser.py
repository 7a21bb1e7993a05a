"""End to end in a real headless browser: `streamlit run app/main.py` on a free localhost port,
driven by Playwright with Debian's chromium (`make test` installs it; playwright cannot
download browsers here). Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("MMSA_CHROMIUM", "/usr/bin/chromium"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not come up on {url}")


@pytest.fixture()
def server(app_library, app_checkpoint, tmp_path):
    """The app served on localhost over a private copy of the tiny library."""
    root, name, rows = app_library
    private = tmp_path / "indexes"
    shutil.copytree(root, private)
    # the map is computed here (numba JIT shared with the AppTest tests of this session) so
    # the server finds it cached; computing it with a progress bar is covered by test_pages
    from mmsa.library import open_library
    from mmsa.library.maps import ensure_map

    ensure_map(open_library(name, root=private))
    port = _free_port()
    env = dict(os.environ, MMSA_INDEXES=str(private), MMSA_CHECKPOINT=str(app_checkpoint),
               MMSA_CACHE=str(tmp_path / "cache"))
    log = open(tmp_path / "streamlit.log", "w")
    # address, headless mode and usage statistics come from the repository's
    # .streamlit/config.toml, as they do for `make app`
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"),
         "--server.port", str(port), "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, private, name, rows
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if proc.returncode not in (0, -15, None):
            print((tmp_path / "streamlit.log").read_text()[-3000:])


def _launch(p):
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
        if os.environ.get("MMSA_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return p.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


def _box(locator, tries: int = 20) -> dict:
    """The bounding box of a visible element (polled: a fragment may be redrawing it)."""
    for _ in range(tries):
        box = locator.first.bounding_box()
        if box is not None:
            return box
        locator.page.wait_for_timeout(250)
    raise AssertionError(f"{locator} has no bounding box")


def _outside_requests(page) -> list[str]:
    """Start recording every request the page makes to anything but this machine."""
    from urllib.parse import urlparse

    outside: list[str] = []

    def seen(request) -> None:
        u = urlparse(request.url)
        if u.scheme in ("data", "blob", "about") or u.hostname in ("localhost", "127.0.0.1"):
            return
        outside.append(request.url)

    page.on("request", seen)
    return outside


def test_search_map_and_upload_in_chromium(server, tmp_path):
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
        if os.environ.get("MMSA_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    url, root, name, rows = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = _outside_requests(page)
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)  # first map: UMAP + numba JIT on a busy machine
        page.goto(url)
        try:
            expect(page.get_by_role("heading", name="Search")).to_be_visible()

            # a search: the hit grid, with the query molecule itself first
            box = page.get_by_role("textbox", name="Query: a SMILES (substructure mode: a SMARTS pattern)")
            box.fill(rows[0]["smiles"])
            box.press("Enter")
            cards = page.locator(".mmsa-card")
            expect(cards.first).to_be_visible()
            expect(cards.first).to_contain_text(rows[0]["name"])
            assert cards.count() >= 5
            assert page.locator(".mmsa-card img.mmsa-pict").count() >= 5
            page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)
            if importlib.util.find_spec("streamlit_ketcher") is not None:
                # the optional structure sketcher renders offline (its own bundled frontend)
                page.get_by_text("Draw a structure").click()
                frame = page.frame_locator("[data-testid=stExpander] iframe").first
                expect(frame.locator(".Ketcher-root").first).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / "sketcher.png"), full_page=True)
                # (Apply -> search was checked by hand; its timing under load made it flaky)

            # the map: a WebGL plotly scatter with the query star
            page.get_by_role("link", name="Map").click()
            expect(page.get_by_role("heading", name="Map")).to_be_visible()
            plot = page.locator(".js-plotly-plot")
            expect(plot.first).to_be_visible()
            expect(page.locator(".js-plotly-plot .gl-container canvas, .js-plotly-plot canvas").first).to_be_attached()
            expect(page.get_by_text("The star is your last query")).to_be_visible()
            # hovering a point shows its structure beside the map (a real mouse hover over
            # the pixel where plotly drew library row 5)
            expect(page.get_by_text("Hover over a point to see its structure here.")).to_be_visible()
            page.wait_for_timeout(1000)  # let the hover bridge attach to the chart
            xy = page.evaluate("""() => {
                const gd = document.querySelector('.st-key-map_chart .js-plotly-plot');
                const L = gd._fullLayout;
                for (const tr of gd._fullData) {
                    const i = (tr.customdata || []).indexOf(5);
                    if (i >= 0 && tr.type === 'scattergl') {
                        const r = gd.getBoundingClientRect();
                        return [r.left + L._size.l + L.xaxis.d2p(tr.x[i]),
                                r.top + L._size.t + L.yaxis.d2p(tr.y[i])];
                    }
                }
                return null; }""")
            assert xy is not None
            page.mouse.move(xy[0] + 40, xy[1] + 40)
            page.mouse.move(xy[0], xy[1], steps=5)
            panel = page.locator(".st-key-map_hover_panel")
            expect(panel.locator(".mmsa-card").filter(has_text=rows[5]["name"])).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "map.png"), full_page=True)
            wide = _box(panel.locator(".mmsa-card"))["width"]
            assert wide > 150, wide
            # a lasso selection around the point: the grid of the selection appears, and the
            # hover panel keeps its width (it once collapsed to 18 px, one letter a line)
            page.mouse.move(xy[0] - 30, xy[1] - 30)
            page.mouse.down()
            for dx, dy in ((30, -30), (30, 30), (-30, 30), (-30, -30)):
                page.mouse.move(xy[0] + dx, xy[1] + dy, steps=4)
            page.mouse.up()
            expect(page.get_by_role("heading", name="Selection:")).to_be_visible()
            page.mouse.move(xy[0] + 40, xy[1] + 40)
            page.mouse.move(xy[0], xy[1], steps=5)
            expect(panel.locator(".mmsa-card").filter(has_text=rows[5]["name"])).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "map-selection.png"), full_page=True)
            box = _box(panel.locator(".mmsa-card"))
            # (the selection's 6-column grid once restyled every grid of the page, this one
            # included: six columns 30 px wide)
            assert box["width"] > 150 and box["height"] < 600, box

            # upload a small CSV and build a library from it
            page.get_by_role("link", name="Libraries").click()
            expect(page.get_by_role("heading", name="Libraries")).to_be_visible()
            csv = tmp_path / "uploaded.csv"
            csv.write_text("smiles,name,logP\n" + "".join(
                f"{r['smiles']},{r['name'].replace(',', ' ').replace('<', '').replace('>', '')},{i / 10}\n"
                for i, r in enumerate(rows[5:17])) + "not_a_smiles,broken,0\n")
            page.locator("input[type=file]").set_input_files(str(csv))
            build = page.get_by_role("button", name="Build library")
            expect(build).to_be_visible()
            build.click()
            expect(page.get_by_text("Built library uploaded: 12 molecules added, 1 rows failed")).to_be_visible()
            # the failed row and its reason (a canvas grid: its accessible cells are hidden)
            expect(page.get_by_text("1 rows could not be added, and why")).to_be_visible()
            expect(page.locator("td", has_text="not_a_smiles")).to_be_attached()
            expect(page.locator("td", has_text="invalid SMILES")).to_be_attached()
            # persisted and selected: the sidebar picker now shows the new library
            picker = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Library")
            expect(picker).to_have_value("uploaded \u00b7 12")
            page.screenshot(path=str(ARTIFACTS / "libraries.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        browser.close()
    assert (root / "uploaded" / "manifest.json").is_file()
    assert not outside, f"the app requested the internet: {outside[:5]}"
    log = (tmp_path / "streamlit.log").read_text()
    assert "external IP" not in log and "External URL" not in log, log[-2000:]


# ------------------------------------------------------------------ files nobody here wrote

EGFR = "rdkit/Contrib/PBF/testData/egfr.sdf"


def _egfr_sdf() -> Path | None:
    """RDKit's egfr.sdf from the installed rdkit (else the cached rdkit wheel of mmsa.data)."""
    import rdkit

    path = Path(rdkit.__file__).parent / "Contrib" / "PBF" / "testData" / "egfr.sdf"
    if path.is_file():
        return path
    from mmsa.paths import cache_dir

    for wheel in (cache_dir() / "wheels").glob("rdkit-*.whl"):
        import zipfile

        with zipfile.ZipFile(wheel) as zf:
            if EGFR in zf.namelist():
                out = Path(os.environ.get("TMPDIR", "/tmp")) / "mmsa-egfr.sdf"
                out.write_bytes(zf.read(EGFR))
                return out
    return None


def _b3db_tsv(tmp: Path) -> Path | None:
    """B3DB's own B3DB/B3DB_classification.tsv from the qc-b3db wheel that `mmsa data`
    fetches (cached under $MMSA_CACHE/wheels; fetched if missing and the network allows)."""
    import zipfile

    from mmsa.data import B3DB
    from mmsa.paths import cache_dir

    wheel = cache_dir() / "wheels" / B3DB.filename
    if not wheel.is_file():
        try:
            from mmsa.data import fetch

            fetch("b3db")
        except Exception:  # noqa: BLE001 - offline: the test is skipped below
            return None
    if not wheel.is_file():
        return None
    with zipfile.ZipFile(wheel) as zf:
        out = tmp / "B3DB_classification.tsv"
        out.write_bytes(zf.read("B3DB/B3DB_classification.tsv"))
    return out


def _choose(page, label: str, option: str, tries: int = 30) -> None:
    """Pick ``option`` in the select box ``label``. A script run that ends while the list is
    open redraws the box and closes the list, so reopen it until the option shows."""
    for _ in range(tries):
        page.get_by_role("combobox", name=label, exact=True).click()
        choice = page.get_by_role("option", name=option, exact=True)
        try:
            choice.wait_for(state="visible", timeout=10_000)
        except Exception:  # noqa: BLE001 - the list closed under us: open it again
            page.keyboard.press("Escape")
            continue
        choice.click()
        return
    raise AssertionError(f"option {option!r} of {label!r} never showed")


def test_upload_b3db_and_egfr_and_search_every_mode(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, root, name, rows = server
    b3db, egfr = _b3db_tsv(tmp_path), _egfr_sdf()
    if b3db is None or egfr is None:
        pytest.skip("B3DB's TSV (qc-b3db wheel) or RDKit's egfr.sdf is not available")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cases = [
        (b3db, "B3DB_classification", "compound_name",
         {"embedding": "CC(=O)Oc1ccccc1C(=O)O", "tanimoto": "CC(=O)Oc1ccccc1C(=O)O",
          "substructure": "c1ccc2[nH]ccc2c1", "exact": "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21"}),
        (egfr, "egfr", "(title line)",
         {"embedding": "COCCOc1cc2ncnc(Nc3cccc(C#C)c3)c2cc1OCCOC",
          "tanimoto": "COCCOc1cc2ncnc(Nc3cccc(C#C)c3)c2cc1OCCOC",
          "substructure": "c1ccc2ncncc2c1", "exact": "c1ccccc1"}),
    ]
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = _outside_requests(page)
        page.set_default_timeout(300_000)
        expect.set_options(timeout=300_000)  # building 7,805 molecules on a busy machine
        page.goto(url)
        # wait for the router's first run: a link clicked before it would open the page
        # script on its own (Streamlit's pages/ folder fallback), without the router
        expect(page.get_by_role("heading", name="Search")).to_be_visible()
        try:
            for path, lib, id_field, queries in cases:
                page.get_by_role("link", name="Libraries").click()
                expect(page.get_by_role("heading", name="Libraries")).to_be_visible()
                page.locator("input[type=file]").set_input_files(str(path))
                expect(page.get_by_role("button", name="Build library")).to_be_visible()
                expect(page.get_by_role("combobox", exact=True, name=(
                    "ID field" if path.suffix == ".sdf" else "ID column"))).to_have_value(id_field)
                page.get_by_role("button", name="Build library").click()
                expect(page.get_by_text(f"Built library {lib}:")).to_be_visible()
                picker = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Library")
                expect(picker).to_have_value(re.compile(f"^{lib} "))
                page.get_by_role("link", name="Search").click()
                expect(page.get_by_role("heading", name="Search")).to_be_visible()
                expect(picker).to_have_value(re.compile(f"^{lib} "))  # the sidebar follows
                for mode, query in queries.items():
                    _choose(page, "Mode", mode)
                    box = page.get_by_role("textbox", name="Query: a SMILES (substructure mode: a SMARTS pattern)")
                    box.fill(query)
                    box.press("Enter")
                    # the summary line, or the "No hits" warning, of this very search
                    expect(page.get_by_text(f"for {query} ({mode})").first).to_be_visible()
                    page.wait_for_timeout(500)
                    assert page.get_by_test_id("stException").count() == 0, (lib, mode)
                    assert page.locator("[data-testid=stAlertContentError]").count() == 0, \
                        (lib, mode)
                    if mode != "exact":
                        expect(page.locator(".mmsa-card").first).to_be_visible()
                    page.screenshot(path=str(ARTIFACTS / f"upload-{lib}-{mode}.png"),
                                    full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure-upload.png"), full_page=True)
            raise
        browser.close()
    assert not outside, f"the app requested the internet: {outside[:5]}"
