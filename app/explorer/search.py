"""Search page: a query SMILES (or SMARTS for substructure), mode, k, threshold -> hit grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import common
from mmsa.types import InputError, MMSAError
from mmsa.viz.export import to_csv_bytes, to_sdf_bytes
from mmsa.viz.grid import Card, grid_html

MODES = ("embedding", "tanimoto", "substructure", "exact")
MODE_HELP = {
    "embedding": "cosine similarity of MMSA embeddings (each hit also shows its Morgan Tanimoto)",
    "tanimoto": "Morgan r=2 2048-bit Tanimoto, exact over the whole library",
    "substructure": "molecules containing the pattern (SMILES or SMARTS)",
    "exact": "the same molecule after standardisation",
}
SCORE_COLUMNS = ("rank", "row", "id", "smiles", "score", "cosine", "tanimoto")
GRID_LIMIT = 48  # hits drawn as pictures; the table and exports hold all of them
EXAMPLE = "CN1CCC[C@H]1c1cccnc1"
DRAWN_KEY = "search_drawn"  # SMILES applied in the sketcher, copied into the query box


def run_search(lib, query: str, mode: str = "embedding", k: int | None = 12,
               threshold: float | None = None) -> pd.DataFrame:
    """``lib.search`` with the page's input rules: empty query or unknown mode -> InputError."""
    query = (query or "").strip()
    if not query:
        raise InputError("enter a query SMILES")
    if mode not in MODES:
        raise InputError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    return lib.search(query, k=k, mode=mode, threshold=threshold)


def add_cosine(lib, hits: pd.DataFrame, query: str) -> pd.DataFrame:
    """Fill the embedding cosine of fingerprint/substructure/exact hits (the store leaves it NaN
    outside embedding mode), so both similarities show whatever the mode. Needs the library's
    encoder; a query that is not a molecule (a SMARTS pattern) keeps NaN."""
    from mmsa.chem.standardize import standardize_smiles

    if hits.empty or "cosine" not in hits or hits["cosine"].notna().all():
        return hits
    try:
        vec = lib.embed_query(standardize_smiles(query))
    except MMSAError:
        return hits
    out = hits.copy()
    rows = out["row"].to_numpy(dtype=np.int64)
    out["cosine"] = np.asarray(lib.vectors[rows], dtype=np.float32) @ vec
    return out


@st.cache_data(max_entries=64, show_spinner=False)
def _cached_search(key, query, mode, k, threshold, can_embed, _lib):
    hits = run_search(_lib, query, mode, k, threshold)
    return add_cosine(_lib, hits, query) if can_embed and mode != "embedding" else hits


def property_columns(hits: pd.DataFrame) -> list[str]:
    """The library's own columns among the hit columns (everything but scores and SMILES)."""
    return [c for c in hits.columns if c not in SCORE_COLUMNS and c != "input_smiles"]


def hit_cards(hits: pd.DataFrame, query: str, mode: str, limit: int = GRID_LIMIT) -> list[Card]:
    """One card per hit: depiction aligned to the query with the matched part highlighted,
    both similarity scores and the library's properties (all text escaped by the grid)."""
    props = property_columns(hits)
    cards = []
    for hit in hits.head(limit).itertuples(index=False):
        row = hit._asdict() if hasattr(hit, "_asdict") else dict(zip(hits.columns, hit))
        svg = common.depict_svg(row["smiles"], query=query, substructure=(mode == "substructure"))
        fields = {}
        for score in ("cosine", "tanimoto"):
            if score in row and pd.notna(row[score]):
                fields[score] = f"{row[score]:.3f}"
        for c in props[:6]:
            fields[c] = row[c]
        cards.append(Card(svg=svg, title=str(row["id"]), subtitle=f"#{row['rank']}", fields=fields))
    return cards


def _sketcher():
    """The streamlit-ketcher structure editor if it is installed (works offline), else None."""
    try:
        from streamlit_ketcher import st_ketcher
    except ImportError:
        return None
    return st_ketcher


def render() -> None:
    common.sidebar()
    st.title("Search")
    lib = common.open_selected()
    if lib is None:
        return
    encoder = common.get_encoder(show=False)
    can_embed = common.encoder_matches(lib, encoder)
    st.caption(f"Library **{lib.name}**: {len(lib):,} molecules")

    c1, c2, c3, c4 = st.columns([5, 2, 1, 1])
    if common.SEARCH_INPUT_KEY not in st.session_state:
        st.session_state[common.SEARCH_INPUT_KEY] = st.session_state.get(common.QUERY_KEY, "")
    drawn = st.session_state.pop(DRAWN_KEY, None)
    if drawn:  # a structure applied in the sketcher on the previous run becomes the query
        st.session_state[common.SEARCH_INPUT_KEY] = drawn
    query = c1.text_input("Query SMILES (or SMARTS for substructure)", key=common.SEARCH_INPUT_KEY,
                          placeholder=f"e.g. {EXAMPLE}")
    mode = c2.selectbox("Mode", MODES, key="search_mode", help="\n".join(
        f"**{m}**: {h}" for m, h in MODE_HELP.items()))
    k = c3.number_input("k", min_value=1, max_value=1000, value=12, step=1, key="search_k")
    threshold = c4.number_input("threshold", min_value=0.0, max_value=1.0, value=0.0, step=0.05,
                                key="search_threshold", help="keep hits scoring at least this")
    sketch = _sketcher()
    if sketch is not None:
        with st.expander("Draw a structure (Ketcher; press Apply to search it)"):
            sketched = sketch(query or "", height=420, key="ketcher")
            if sketched and sketched.strip() != query.strip():
                st.session_state[DRAWN_KEY] = sketched.strip()
                st.rerun()
    if mode == "embedding" and not can_embed:
        why = ("the MMSA model could not be loaded" if encoder is None else
               "this library was built with another model checkpoint than the one loaded")
        st.warning(f"Embedding search is unavailable: {why}. Use tanimoto, substructure or "
                   "exact search, or rebuild the library with the loaded model.")
        return
    if not query.strip():
        st.info(f"Type a SMILES and press Enter, e.g. `{EXAMPLE}` (nicotine).")
        return
    try:
        hits = _cached_search(common.library_key(lib), query.strip(), mode, int(k),
                              float(threshold) or None, can_embed, _lib=lib)
    except MMSAError as exc:
        st.error(f"Search failed: {exc}")
        return
    st.session_state[common.QUERY_KEY] = query.strip()
    if hits.empty:
        st.warning("No hits. Lower the threshold, raise k, or try another mode.")
        return
    shown = min(len(hits), GRID_LIMIT)
    st.markdown(f"**{len(hits)} hits** for `{query.strip()}` ({mode})"
                + (f"; the first {shown} are drawn" if shown < len(hits) else ""))
    st.html(grid_html(hit_cards(hits, query.strip(), mode), columns=4))
    with st.expander("Hits as a table", expanded=False):
        st.dataframe(hits, hide_index=True, width="stretch")
    d1, d2, d3 = st.columns([1, 1, 3])
    # files are generated when clicked (an SDF of many hits takes a while)
    d1.download_button("Download CSV", lambda: to_csv_bytes(hits), file_name=f"{lib.name}-hits.csv",
                       mime="text/csv", key="dl_hits_csv", on_click="ignore")
    d2.download_button("Download SDF", lambda: to_sdf_bytes(hits), file_name=f"{lib.name}-hits.sdf",
                       mime="chemical/x-mdl-sdfile", key="dl_hits_sdf", on_click="ignore")
    with d3:
        pick = st.selectbox("Open a hit's hyperedge", hits["row"].tolist(), key="search_pick",
                            format_func=lambda r: f"{hits.loc[hits['row'] == r, 'id'].iloc[0]} (row {r})")
        if st.button("Show hyperedge", key="search_to_hyperedge"):
            st.session_state[common.FOCUS_KEY] = int(pick)
            st.switch_page("pages/hyperedges.py")
