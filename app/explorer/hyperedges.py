"""Hyperedges page: a molecule's hyperedge (itself + its nearest neighbours) with the members'
shared motif (MCS) highlighted on each, and the library's most coherent hyperedges."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import common
from mmsa.types import InputError, MMSAError
from mmsa.viz.grid import Card, grid_html
from mmsa.viz.motif import motif_smiles

TOP = 20
ONE, COHERENT = "This molecule's hyperedge", "Most coherent hyperedges"


ID_KEY = "hyperedge_id"      # the id box (one widget, one key, whatever was shown before)
LAST_ID_KEY = "hyperedge_last"  # its text, kept while another page is shown


def find_row(lib, text: str) -> int:
    """Library row for a user's id (exact match first, then ignoring case), or a row number
    written ``#123`` / ``row 123``."""
    text = (text or "").strip()
    if not text:
        raise InputError("enter a molecule id or a row number")
    meta = lib.metadata
    ids = meta["id"].astype(str)
    hits = meta.index[ids == text]
    if not len(hits):
        hits = meta.index[ids.str.strip().str.casefold() == text.casefold()]
    if len(hits):
        return int(meta["row"].iloc[hits[0]])
    digits = text.removeprefix("#").removeprefix("row").strip()
    if digits.isdigit() and int(digits) < len(lib):
        return int(digits)
    raise InputError(f"no molecule with id {text!r} in {lib.name} (or give a row number < {len(lib)})")


def motif_smarts(motif) -> str | None:
    """The SMARTS of an MCS result (None when there is no common motif)."""
    if motif is None:
        return None
    smarts = getattr(motif, "smarts", None)
    if smarts is None and isinstance(motif, dict):
        smarts = motif.get("smarts")
    if smarts is None and isinstance(motif, str):
        smarts = motif
    return smarts or None


def motif_size(motif) -> int:
    for attr in ("num_atoms", "n_atoms", "atoms"):
        v = getattr(motif, attr, None)
        if v is None and isinstance(motif, dict):
            v = motif.get(attr)
        if isinstance(v, int):
            return v
    return 0


def hyperedge_frame(lib, row: int) -> pd.DataFrame:
    """Members of ``row``'s hyperedge (centre first) with their cosine to the centre."""
    members = [int(r) for r in lib.hyperedge(row) if int(r) >= 0]
    frame = lib.metadata.iloc[members].reset_index(drop=True)
    scores = getattr(lib, "hyperedge_scores", None)
    if scores is not None:
        frame.insert(2, "cosine", [float(x) for x in scores[row][: len(members)]])
    return frame


def member_cards(frame: pd.DataFrame, smarts: str | None) -> list[Card]:
    cards = []
    for i, r in enumerate(frame.itertuples(index=False)):
        fields = {"cosine": f"{r.cosine:.3f}"} if hasattr(r, "cosine") else {}
        cards.append(Card(svg=common.depict_svg(r.smiles, highlight=smarts), title=str(r.id),
                          subtitle="centre" if i == 0 else f"row {r.row}", fields=fields))
    return cards


def coherent_with_motifs(lib, top: int = TOP, progress=None) -> pd.DataFrame:
    """The library's most coherent hyperedges with their shared motif
    (:func:`mmsa.library.hyperedges.coherent_with_motifs`; motifs cached on disk, the top
    ones at build time), the motif written as SMILES for the table."""
    from mmsa.library.hyperedges import coherent_with_motifs as compute

    table = compute(lib, top=top, progress=progress)
    table["motif"] = [motif_smiles(x) for x in table.pop("motif smarts")]
    return table


@st.cache_data(max_entries=8, show_spinner=False)
def _coherent(key, top, _lib):
    bar = common.ProgressBar("Finding the shared motif of each hyperedge", unit="hyperedges")
    table = coherent_with_motifs(_lib, top, progress=bar)
    bar.bar.empty()
    return table


def show_hyperedge(lib, row: int) -> None:
    frame = hyperedge_frame(lib, row)
    with st.spinner("Finding the shared motif (MCS)\u2026"):
        try:
            motif = lib.hyperedge_motif(row)
        except MMSAError as exc:
            st.warning(f"No shared motif: {exc}")
            motif = None
    smarts = motif_smarts(motif)
    centre = frame.iloc[0]
    st.subheader(f"Hyperedge of {centre['id']}")
    if smarts:
        st.markdown(f"{len(frame)} members share a motif of **{motif_size(motif) or '?'} atoms** "
                    f"(highlighted): `{motif_smiles(smarts)}`", help=f"SMARTS: {smarts}")
    else:
        st.markdown(f"{len(frame)} members; they share no common motif beyond single atoms.")
    st.html(grid_html(member_cards(frame, smarts), columns=5))


def render() -> None:
    common.sidebar()
    st.title("Hyperedges")
    lib = common.open_selected()
    if lib is None:
        return
    st.caption("A molecule's hyperedge is the molecule and its nearest neighbours in the MMSA "
               "embedding; their maximum common substructure shows *why* they are neighbours.")
    sent = st.session_state.pop(common.FOCUS_PENDING_KEY, None)
    if sent is not None and 0 <= sent < len(lib):  # from a search hit or a map selection
        st.session_state[ID_KEY] = str(lib.metadata["id"].iloc[sent])
    elif ID_KEY not in st.session_state:  # back from another page: the last id typed
        st.session_state[ID_KEY] = st.session_state.get(LAST_ID_KEY, "")
    text = st.text_input("Molecule id (or row number, e.g. #12)", key=ID_KEY,
                         help="Ids are matched ignoring case.")
    st.session_state[LAST_ID_KEY] = text
    view = st.radio("Show", [ONE, COHERENT], horizontal=True, key="hyperedge_view",
                    label_visibility="collapsed")
    if view == ONE:
        if text.strip():
            try:
                row = find_row(lib, text)
            except InputError as exc:
                st.error(str(exc))
            else:
                st.session_state[common.FOCUS_KEY] = row
                show_hyperedge(lib, row)
        else:
            st.info("Pick a molecule: type its id, or come here from a search hit or a map "
                    "selection.")
        return
    table = _coherent(common.library_key(lib), TOP, _lib=lib)
    if table.empty:
        st.info("No hyperedges in this library.")
        return
    st.caption(f"The {len(table)} most coherent disjoint hyperedges (members closest to their "
               "centre), largest shared motif first.")
    st.dataframe(table.drop(columns=["members"], errors="ignore"), hide_index=True,
                 width="stretch", column_config={
                     "coherence": st.column_config.NumberColumn(format="%.3f")})
    pick = st.selectbox("Browse one", table["hyperedge"].tolist(), key="coherent_pick",
                        format_func=lambda r: str(table.loc[table["hyperedge"] == r, "id"].iloc[0]))
    if pick is not None:
        show_hyperedge(lib, int(pick))
