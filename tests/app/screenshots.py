"""Screenshots of the real app for the docs (not a test): serves `app/main.py` on the
current environment's libraries (default ./indexes, i.e. the approved-drugs library that
`make app` builds) and saves PNGs of the pages.

    .venv/bin/python tests/app/screenshots.py [--out docs/screenshots] [--query SMILES]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIAZEPAM = "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    p.add_argument("--query", default=DIAZEPAM)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--timeout", type=float, default=300, help="seconds per step")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless",
         "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.set_default_timeout(args.timeout * 1000)
            expect.set_options(timeout=args.timeout * 1000)
            page.goto(url)
            box = page.get_by_role("textbox", name="Query: a SMILES (substructure mode: a SMARTS pattern)")
            box.fill(args.query)
            box.press("Enter")
            expect(page.locator(".mmsa-card").first).to_be_visible()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "search.png"))
            # why is this a hit: the second hit beside the query
            page.get_by_text("Why is this a hit?").click()
            combo = page.get_by_role("combobox", name="Hit", exact=True)
            combo.click()
            page.wait_for_timeout(700)
            page.keyboard.press("ArrowDown")
            page.keyboard.press("ArrowDown")
            page.keyboard.press("Enter")
            expect(page.get_by_text("Memory slots they share")).to_be_visible()
            page.wait_for_timeout(1500)
            page.get_by_text("Why is this a hit?").scroll_into_view_if_needed()
            page.screenshot(path=str(out / "why.png"))
            page.get_by_text("Why is this a hit?").click()
            # the hits filtered by drug-like properties (QED at least 0.5)
            page.get_by_text("Filter the hits by drug-like properties").click()
            page.get_by_text("Filter by drug-like properties").click()
            qed = page.get_by_test_id("stSlider").filter(has_text="QED").get_by_role("slider").first
            qed.focus()
            for _ in range(10):
                page.keyboard.press("ArrowRight")
            page.wait_for_timeout(3000)
            expect(page.get_by_text("pass the property filters")).to_be_visible()
            page.get_by_text("Filter the hits by drug-like properties").scroll_into_view_if_needed()
            page.screenshot(path=str(out / "filters.png"))
            page.get_by_role("link", name="Map").click()
            expect(page.locator(".js-plotly-plot").first).to_be_visible()
            page.get_by_label("Colour by").click()
            page.get_by_role("option", name="memory slot").click()
            page.wait_for_timeout(3000)
            xy = page.evaluate("""() => {
                const gd = document.querySelector('.st-key-map_chart .js-plotly-plot');
                const L = gd._fullLayout, r = gd.getBoundingClientRect();
                const tr = gd._fullData.find((t) => t.type === 'scattergl' && t.x.length);
                return [r.left + L._size.l + L.xaxis.d2p(tr.x[0]),
                        r.top + L._size.t + L.yaxis.d2p(tr.y[0])]; }""")
            page.mouse.move(xy[0] + 30, xy[1] + 30)
            page.mouse.move(xy[0], xy[1], steps=5)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out / "map.png"))
            page.get_by_role("link", name="Hyperedges").click()
            page.get_by_role("textbox", name="Molecule id (or row number, e.g. #12)").fill("#0")
            page.keyboard.press("Enter")
            expect(page.locator(".mmsa-card").first).to_be_visible()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "hyperedges.png"))
            page.get_by_role("link", name="Memory").click()
            expect(page.get_by_role("heading", name="Memory slots")).to_be_visible()
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out / "memory.png"))
            page.get_by_role("link", name="Activity cliffs").click()
            expect(page.get_by_role("heading", name="Activity cliffs")).to_be_visible()
            expect(page.locator(".mmsa-card").first).to_be_visible()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "cliffs.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print("\n".join(str(p) for p in sorted(out.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
