"""Activity cliffs page: for a library with a numeric column (an activity, logBB, ...), the
pairs of close neighbours whose values differ most, ranked by SALI, both structures drawn
with what differs highlighted."""

from __future__ import annotations

import streamlit as st

from explorer import common
from mmsa.viz.grid import Card, grid_html

PAIRS_DRAWN = 10


@st.cache_data(max_entries=16, show_spinner="Finding activity cliffs\u2026")
def cliffs(key, column: str, similarity: str, min_similarity: float, top: int, _lib):
    from mmsa.library.cliffs import activity_cliffs

    return activity_cliffs(_lib, column, top=top, similarity=similarity,
                           min_similarity=min_similarity)


@st.cache_data(max_entries=2_000, show_spinner=False)
def pair_svgs(a: str, b: str):
    from mmsa.viz.depiction import difference_svgs

    return difference_svgs(a, b, width=300, height=220)


def pair_cards(table, column: str, limit: int = PAIRS_DRAWN) -> list[Card]:
    """Two cards per pair (a, then b drawn like a), the atoms that differ highlighted."""
    cards = []
    for i, r in enumerate(table.head(limit).to_dict("records")):
        svg_a, svg_b = pair_svgs(r["smiles_a"], r["smiles_b"])
        common_fields = {"similarity": f"{r['similarity']:.3f}", "SALI": f"{r['sali']:.1f}"}
        cards.append(Card(svg=svg_a, title=str(r["id_a"]), subtitle=f"pair {i + 1}",
                          fields={column: r["value_a"], **common_fields}))
        cards.append(Card(svg=svg_b, title=str(r["id_b"]), subtitle=f"pair {i + 1}",
                          fields={column: r["value_b"], "difference": r["delta"]}))
    return cards


def render() -> None:
    from mmsa.library.cliffs import numeric_columns

    common.sidebar()
    st.title("Activity cliffs")
    lib = common.open_selected()
    if lib is None:
        return
    st.caption("Pairs of close neighbours with a large difference in a numeric column, ranked "
               "by the structure-activity landscape index SALI = |difference| / (1 - "
               "similarity). Neighbours are each molecule's stored hyperedge (its nearest "
               "molecules in the MMSA embedding). What differs between the two is highlighted.")
    columns = numeric_columns(lib.metadata)
    if not columns:
        st.info(f"Library **{lib.name}** has no numeric column (an activity, a logBB...): "
                "activity cliffs need one.")
        return
    c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
    column = c1.selectbox("Value", columns, key="cliff_column")
    similarity = c2.radio("Similarity", ["cosine", "tanimoto"], horizontal=True,
                          key="cliff_similarity",
                          help="cosine: MMSA embedding; tanimoto: Morgan r=2 (of the same pairs)")
    min_sim = c3.slider("Least similarity", 0.0, 1.0, 0.5, 0.05, key="cliff_min_sim")
    top = int(c4.number_input("Pairs", 1, 500, 50, key="cliff_top"))
    table = cliffs(common.library_key(lib), column, similarity, float(min_sim), top, _lib=lib)
    if table.empty:
        st.warning("No pair of neighbours with values passes these settings; lower the least "
                   "similarity.")
        return
    st.markdown(f"**{len(table)} pairs**; the first {min(PAIRS_DRAWN, len(table))} are drawn "
                "(left: one molecule; right: its neighbour, laid out like it).")
    st.html(grid_html(pair_cards(table, column), columns=4))
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in ("similarity", "sali", "delta")})
