"""End to end in a real headless browser: `streamlit run app/main.py` on a free localhost port,
driven by Playwright with Debian's chromium (`make test` installs it; playwright cannot
download browsers here). Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import importlib.util
import os
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
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
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)  # first map: UMAP + numba JIT on a busy machine
        page.goto(url)
        try:
            expect(page.get_by_role("heading", name="Search")).to_be_visible()

            # a search: the hit grid, with the query molecule itself first
            box = page.get_by_label("Query SMILES (or SMARTS for substructure)")
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
            expect(page.locator(".mmsa-card").filter(has_text=rows[5]["name"])).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "map.png"), full_page=True)

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
