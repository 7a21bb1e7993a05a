"""MMSA Explorer: the Streamlit entry point (`streamlit run app/main.py`, or `make app`).

A thin router: st.navigation over the page scripts in app/pages/, whose logic lives in the
importable package app/explorer/ (so tests can call it). Each page draws the shared library
picker in the sidebar itself (elements drawn here, before page.run(), would not survive a page
switch in AppTest).
"""

from __future__ import annotations

import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:  # `explorer` (page logic) lives beside this file
    sys.path.insert(0, str(APP_DIR))

import streamlit as st  # noqa: E402

# Offline: no ":material/...:" icons (Streamlit turns a material page icon into a favicon URL
# on an external font host), so pages have no icons and the favicon is an emoji (drawn by the
# browser); .streamlit/config.toml turns off usage statistics and the external-IP lookup.
ICON = "\U0001F9EC"  # DNA: an emoji favicon is drawn by the browser, no request
st.set_page_config(page_title="MMSA Explorer", page_icon=ICON, layout="wide")

PAGES = [
    st.Page(str(APP_DIR / "pages" / "search.py"), title="Search",
            default=True),
    st.Page(str(APP_DIR / "pages" / "map.py"), title="Map"),
    st.Page(str(APP_DIR / "pages" / "hyperedges.py"), title="Hyperedges"),
    st.Page(str(APP_DIR / "pages" / "memory.py"), title="Memory"),
    st.Page(str(APP_DIR / "pages" / "cliffs.py"), title="Activity cliffs"),
    st.Page(str(APP_DIR / "pages" / "libraries.py"), title="Libraries"),
    st.Page(str(APP_DIR / "pages" / "model.py"), title="Model"),
]

page = st.navigation(PAGES)
page.run()  # each page draws the shared sidebar (explorer.common.sidebar) itself
