"""Search page: a query SMILES (a SMARTS pattern in substructure mode), mode, k, threshold ->
a grid with one card per parent structure (salt forms grouped), a table and exports of every
row."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import common
from mmsa.library.results import K_MAX, SCORE_COLUMNS, check_k, search_parents
from mmsa.types import InputError, MMSAError
from mmsa.viz.export import to_csv_bytes, to_sdf_bytes
from mmsa.viz.grid import Card, grid_html, value_colours

MODES = ("embedding", "tanimoto", "hybrid", "substructure", "exact")
MODE_HELP = {
    "embedding": "cosine similarity of MMSA embeddings (each hit also shows its Morgan Tanimoto)",
    "tanimoto": "Morgan r=2 2048-bit Tanimoto, exact over the whole library",
    "hybrid": "weighted sum of the embedding cosine and the Morgan Tanimoto (the weight is in "
              "the library's manifest, 0.5 by default): better neighbours than either alone "
              "in docs/benchmarks.md",
    "substructure": "molecules containing the pattern, read as SMARTS (a SMILES is valid "
                    "SMARTS: lower-case atoms are aromatic, [nH] needs the H)",
    "exact": "the same molecule after standardisation",
}
#: one label and help whatever the mode (a widget whose label changes is a new widget)
QUERY_LABEL = "Query: a SMILES (substructure mode: a SMARTS pattern)"
QUERY_HELP = ("Embedding, tanimoto, hybrid and exact modes read a SMILES, standardised (salts stripped) "
              "as the library was. Substructure mode reads a SMARTS pattern (a SMILES is valid "
              "SMARTS): `c1ccc2[nH]ccc2c1` matches indoles with a free N-H only; lower-case "
              "atoms are aromatic, upper-case aliphatic; a ring in Kekulé form (C1=CC=CC=C1) "
              "is read as aromatic.")
PATTERN_NOTE = ("Substructure mode: the query is read as a **SMARTS** pattern (a SMILES is valid "
                "SMARTS; `[nH]` requires the N-H, lower-case atoms are aromatic).")
GRID_LIMIT = 48  # hits drawn as pictures; the table and exports hold all of them
FIELDS_PER_CARD = 6
EXAMPLE = "CN1CCC[C@H]1c1cccnc1"
DRAWN_KEY = "search_drawn"  # SMILES applied in the sketcher, copied into the query box


def run_search(lib, query: str, mode: str = "embedding", k=12, threshold: float | None = None,
               cosine: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The page's search: ``(every row, one row per parent)`` (see
    :func:`mmsa.library.results.search_parents`); InputError for an empty query, an unknown
    mode or k outside 1..K_MAX."""
    if mode not in MODES:
        raise InputError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    return search_parents(lib, query, mode, check_k(k), threshold, cosine=cosine)


@st.cache_data(max_entries=64, show_spinner=False)
def _cached_search(key, query, mode, k, threshold, can_embed, _lib):
    return run_search(_lib, query, mode, k, threshold, cosine=can_embed)


def property_columns(hits: pd.DataFrame) -> list[str]:
    """The library's own columns among the hit columns (everything but scores and SMILES)."""
    return [c for c in hits.columns
            if c not in SCORE_COLUMNS and c not in ("input_smiles", "ids", "rows", "forms")]


def hit_cards(parents: pd.DataFrame, query: str, mode: str, limit: int = GRID_LIMIT,
              colour_by: str | None = None) -> list[Card]:
    """One card per parent structure: depiction aligned to the query with the matched part
    highlighted, both similarity scores, every id of its forms and the library's properties
    (all text escaped by the grid). Columns are read by name, so any column name works."""
    from mmsa.library.results import parse_pattern

    props = property_columns(parents)
    pattern = query
    if mode == "substructure":
        try:
            pattern = parse_pattern(query)[1]
        except InputError:
            pattern = query
    cards = []
    shown = parents.head(limit)
    accents = ([None] * len(shown) if not colour_by or colour_by not in shown else
               value_colours(pd.to_numeric(shown[colour_by], errors="coerce").tolist()))
    for row, accent in zip(shown.to_dict("records"), accents):
        svg = common.depict_svg(row["smiles"], query=pattern, substructure=(mode == "substructure"))
        fields: dict[str, object] = {}
        for score in ("cosine", "tanimoto"):
            if score in row and pd.notna(row[score]):
                fields[score] = f"{row[score]:.3f}"
        ids = row.get("ids") or [row["id"]]
        if len(ids) > 1:
            fields[f"{len(ids)} entries"] = ", ".join(str(i) for i in ids)
        for c in props[:FIELDS_PER_CARD]:
            fields[c] = row[c]
        if colour_by and colour_by not in fields and colour_by in row:
            fields[colour_by] = row[colour_by]
        cards.append(Card(svg=svg, title=str(row["id"]), subtitle=f"#{row['rank']}", fields=fields,
                          accent=accent))
    return cards


@st.cache_data(max_entries=256, show_spinner="Comparing the hit with the query\u2026")
def _explain(key, query, row, _lib):
    from mmsa.library.explain import explain_hit

    return explain_hit(_lib, query, row)


def why_section(lib, parents: pd.DataFrame, query: str, can_embed: bool) -> None:
    """Why is this a hit: the query and a chosen hit side by side with their maximum common
    substructure highlighted, both similarities and the memory slots they share."""
    with st.expander("Why is this a hit?", expanded=False):
        ids = dict(zip(parents["row"], parents["id"]))
        row = st.selectbox("Hit", list(ids), key="why_pick", index=None,
                           placeholder="choose a hit to compare with the query",
                           format_func=lambda r: f"{ids[r]} (row {r})")
        if row is None:
            return
        try:
            why = _explain(common.library_key(lib), query, int(row), _lib=lib)
        except MMSAError as exc:
            st.error(str(exc))
            return
        hit = str(lib.metadata["smiles"].iloc[int(row)])
        shared = (f"share a common substructure of **{why.motif_atoms} atoms** (highlighted)"
                  if why.motif else "share no common substructure of 3 atoms or more")
        def num(x: float) -> str:
            return "unknown" if x != x else f"{x:.3f}"

        st.markdown(f"The query and **{ids[row]}** {shared}; embedding cosine "
                    f"**{num(why.cosine)}**, Morgan Tanimoto **{num(why.tanimoto)}**.")
        cards = [Card(svg=common.depict_svg(query, highlight=why.motif, width=320, height=240),
                      title="query", subtitle=query),
                 Card(svg=common.depict_svg(hit, query=query, width=320, height=240),
                      title=str(ids[row]), subtitle=hit)]
        st.html(grid_html(cards, columns=2))
        if why.modalities:
            from mmsa.library.explain import MODALITY_LABELS

            parts = [f"{MODALITY_LABELS.get(m, m)} **{num(c)}**" for m, c in why.modalities.items()]
            st.markdown("**Cosine per modality** (what each view of the model sees): "
                        + " \u00b7 ".join(parts) + ".",
                        help="The cosine of the two molecules' codes from each encoder (2D "
                             "graph, 2D depiction, 3D conformer) in the shared space, before "
                             "they are fused and the memory readout is added.")
        if not can_embed:
            st.caption("The loaded model did not build this library: no cosine or slots.")
            return
        if why.slots.empty:
            st.caption("They share none of their strongest memory slots.")
        else:
            table = why.slots.copy()
            try:
                names = common.slot_labels(common.library_key(lib), _lib=lib)
            except MMSAError:
                names = {}
            table.insert(1, "what the slot holds", [names.get(int(s), "") for s in table["slot"]])
            st.markdown(f"**Memory slots they share** ({len(table)}): the model's learned "
                        "prototypes that both molecules are assigned to.")
            st.dataframe(table, hide_index=True, width="stretch", column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in ("query weight", "hit weight", "shared")})
        if why.note:
            st.caption(why.note)


def numeric_columns(parents: pd.DataFrame) -> list[str]:
    """The library columns of the hits holding numbers (grouped forms may join values)."""
    out = []
    for c in property_columns(parents):
        values = pd.to_numeric(parents[c], errors="coerce")
        if values.notna().mean() >= 0.5 and values.nunique() > 1:
            out.append(c)
    return out


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
    mode = c2.selectbox("Mode", MODES, key="search_mode", help="\n".join(
        f"**{m}**: {h}" for m, h in MODE_HELP.items()))
    pattern_mode = mode == "substructure"
    query = c1.text_input(QUERY_LABEL, key=common.SEARCH_INPUT_KEY, help=QUERY_HELP,
                          placeholder=f"e.g. {EXAMPLE}")
    if pattern_mode:
        c1.caption(PATTERN_NOTE)
    # no min/max on the widget: an out-of-range k would be refused in the browser and the old
    # results would stay; the page says what is wrong instead
    k = c3.number_input("k", value=12, step=1, key="search_k",
                        help=f"how many compounds (1 to {K_MAX})")
    threshold = c4.number_input("threshold", min_value=0.0, max_value=1.0, value=0.0, step=0.05,
                                key="search_threshold", help="keep hits scoring at least this")
    sketch = _sketcher()
    if sketch is not None:
        with st.expander("Draw a structure (Ketcher; press Apply to search it)"):
            sketched = sketch(query or "", height=420, key="ketcher")
            if sketched and sketched.strip() != query.strip():
                st.session_state[DRAWN_KEY] = sketched.strip()
                st.rerun()
    if mode in ("embedding", "hybrid") and not can_embed:
        why = ("the MMSA model could not be loaded" if encoder is None else
               "this library was built with another model checkpoint than the one loaded")
        st.warning(f"Embedding search is unavailable: {why}. Use tanimoto, substructure or "
                   "exact search, or rebuild the library with the loaded model.")
        return
    try:
        k = check_k(k)
    except InputError as exc:
        st.error(f"{exc}. No search was run.")
        return
    if not query.strip():
        st.info("Type a SMARTS pattern and press Enter, e.g. `c1ccc2[nH]ccc2c1` (indoles with a "
                "free N-H)." if pattern_mode else
                f"Type a SMILES and press Enter, e.g. `{EXAMPLE}` (nicotine).")
        return
    try:
        rows, parents = _cached_search(common.library_key(lib), query.strip(), mode, k,
                                       float(threshold) or None, can_embed, _lib=lib)
    except MMSAError as exc:
        st.error(f"Search failed: {exc}")
        return
    st.session_state[common.QUERY_KEY] = query.strip()
    if parents.empty:
        st.warning(f"No hits for `{query.strip()}` ({mode}). Lower the threshold, raise k, or "
                   "try another mode.")
        return
    with st.expander("Filter the hits by drug-like properties"):
        ranges = common.property_filter("search")
    if ranges:
        from mmsa.library.properties import filter_mask

        props = common.rows_properties(common.library_key(lib), tuple(parents["row"].tolist()),
                                       _lib=lib)
        keep = filter_mask(props, ranges)
        st.caption(f"{int(keep.sum())} of {len(parents)} compounds pass the property filters.")
        parents = parents[keep].reset_index(drop=True)
        rows = rows[rows["smiles"].isin(set(parents["smiles"]))].reset_index(drop=True)
        if parents.empty:
            st.warning("No hit passes the property filters. Widen the ranges.")
            return
    shown = min(len(parents), GRID_LIMIT)
    grouped = len(rows) - len(parents)
    st.markdown(f"**{len(parents)} compounds** for `{query.strip()}` ({mode})"
                + (f", {len(rows)} library entries ({grouped} salt forms or duplicates grouped "
                   "with their parent)" if grouped else "")
                + (f"; the first {shown} are drawn" if shown < len(parents) else ""))
    numeric = numeric_columns(parents)
    colour_by = None
    if numeric:
        colour_by = st.selectbox("Colour the cards by", ["(none)", *numeric], key="search_colour",
                                 help="A numeric column of the library (an activity...): each "
                                      "card's top border on a Viridis scale, low (purple) to "
                                      "high (yellow), over the hits shown")
        colour_by = None if colour_by == "(none)" else colour_by
    st.html(grid_html(hit_cards(parents, query.strip(), mode, colour_by=colour_by), columns=4))
    if mode != "substructure":
        why_section(lib, parents, query.strip(), can_embed)
    with st.expander("Hits as a table (every library entry)", expanded=False):
        st.dataframe(rows, hide_index=True, width="stretch")
    d1, d2, d3 = st.columns([1, 1, 3])
    # files are generated when clicked (an SDF of many hits takes a while); every row goes out
    d1.download_button("Download CSV", lambda: to_csv_bytes(rows), file_name=f"{lib.name}-hits.csv",
                       mime="text/csv", key="dl_hits_csv", on_click="ignore")
    d2.download_button("Download SDF", lambda: to_sdf_bytes(rows), file_name=f"{lib.name}-hits.sdf",
                       mime="chemical/x-mdl-sdfile", key="dl_hits_sdf", on_click="ignore")
    with d3:
        ids = dict(zip(parents["row"], parents["id"]))
        pick = st.selectbox("Open a hit's hyperedge", list(ids), key="search_pick",
                            format_func=lambda r: f"{ids[r]} (row {r})")
        if st.button("Show hyperedge", key="search_to_hyperedge"):
            common.focus_on(int(pick))
            st.switch_page("pages/hyperedges.py")
