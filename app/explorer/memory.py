"""Memory page: the model's memory slots (learned prototypes) as they fall on this library.

One row per slot (size, mean assignment weight, prototype molecules); for a chosen slot its
members, their common motif, property distributions and where they lie on the map; for a
query molecule its slot weights as a bar chart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import common
from mmsa.library.views import PROPERTIES_LIMIT
from mmsa.types import MMSAError
from mmsa.viz.figures import distribution_figure, map_figure, slot_weights_figure
from mmsa.viz.grid import Card, grid_html
from mmsa.viz.motif import motif_smiles

N_PROTOTYPES = 3
PICTURE = (300, 220)  # prototype depictions (pixels); shown at THUMB_ROW px high in the table
THUMB_ROW = 150
#: drug-like property distributions are offered without asking up to this library size, the
#: size up to which they are computed at build time (or once the Map page's filter has
#: computed them)
PROPERTY_LIMIT = PROPERTIES_LIMIT
MEMBER_GRID = 12
MOTIF_MEMBERS = 8  # the common motif of a slot is the MCS of its top members


def num_slots(lib, encoder=None) -> int:
    ck = lib.manifest.get("checkpoint") or {}
    if ck.get("num_slots"):
        return int(ck["num_slots"])
    if encoder is not None:
        return int(encoder.num_slots)
    ids, _ = lib.slot_topk
    return int(np.asarray(ids).max()) + 1


@st.cache_data(max_entries=8, show_spinner=False)
def slot_overview(key, m, _lib) -> pd.DataFrame:
    """The slot table with prototype pictures (data URIs) and ids, for st.dataframe."""
    from mmsa.library.slots import slot_table

    ids, weights = _lib.slot_topk
    table = slot_table(ids, weights, num_slots=m, n_prototypes=N_PROTOTYPES)
    meta = _lib.metadata
    for j in range(N_PROTOTYPES):
        rows = [p[j] if len(p) > j else None for p in table["prototypes"]]
        table[f"prototype {j + 1}"] = [
            None if r is None else common.svg_data_uri(common.depict_svg(meta["smiles"].iloc[r], width=PICTURE[0], height=PICTURE[1]))
            for r in rows]
    table["prototype ids"] = [", ".join(str(meta["id"].iloc[r]) for r in p) for p in table["prototypes"]]
    return table


@st.cache_data(max_entries=64, show_spinner="Finding the slot's common motif\u2026")
def slot_motif(key, slot, smiles: tuple[str, ...]) -> str | None:
    """SMARTS of the maximum common substructure of a slot's top members (None if none)."""
    from mmsa.chem import motifs

    try:
        res = motifs.mcs(list(smiles), timeout=2.0)
    except MMSAError:
        return None
    from explorer.hyperedges import motif_smarts

    return motif_smarts(res)


def query_slot_weights(lib, smiles: str) -> np.ndarray:
    """float [num_slots] memory-slot weights of one molecule, embedded (after standardisation)
    by the library's encoder; InputError if it cannot be parsed or embedded."""
    from mmsa.chem.standardize import standardize_smiles
    from mmsa.types import InputError

    res = lib.encoder.embed([standardize_smiles(smiles)])
    if not bool(res.ok[0]):
        reason = res.failures[0].reason if res.failures else "cannot be embedded"
        raise InputError(f"{smiles!r}: {reason}")
    return np.asarray(res.slot_weights[0])


def render() -> None:
    common.sidebar()
    st.title("Memory slots")
    lib = common.open_selected()
    if lib is None:
        return
    encoder = common.get_encoder(show=False)
    m = num_slots(lib, encoder)
    st.caption(f"The MMSA memory bank has **{m} slots** (learned prototype anchors). Each "
               f"molecule of **{lib.name}** belongs to the slot it is assigned to most strongly.")
    key = common.library_key(lib)
    table = slot_overview(key, m, _lib=lib)
    names = common.slot_labels(key, _lib=lib)
    table = table.copy()
    table.insert(1, "what the slot holds", [names.get(int(s), "") for s in table["slot"]])
    only_used = st.toggle("Hide empty slots", value=True, key="mem_hide_empty")
    shown = table[table["size"] > 0] if only_used else table
    cfg = {f"prototype {j + 1}": st.column_config.ImageColumn(f"prototype {j + 1}", width="medium",
                                                              help="double-click to enlarge")
           for j in range(N_PROTOTYPES)}
    cfg["what the slot holds"] = st.column_config.TextColumn(
        "what the slot holds", width="large",
        help="Named automatically: the scaffold most enriched among the slot's members (how "
             "many carry it), and the property that most separates them from the library")
    cfg["mean_weight"] = st.column_config.NumberColumn("mean weight", format="%.3f")
    cfg["usage"] = st.column_config.ProgressColumn("usage", min_value=0.0,
                                                   max_value=float(max(table["usage"].max(), 1e-9)),
                                                   format="%.3f")
    st.dataframe(shown.drop(columns=["prototypes"]), column_config=cfg, hide_index=True,
                 row_height=THUMB_ROW, width="stretch")

    used = table.loc[table["size"] > 0, "slot"].tolist()
    if not used:
        st.info("No molecule is assigned to any slot.")
        return
    slot = st.selectbox("Inspect a slot", used, key="mem_slot",
                        format_func=lambda s: f"slot {s} ({int(table.loc[s, 'size']):,} molecules): "
                                              f"{names.get(int(s), '')}")
    from mmsa.library.slots import property_distributions, slot_members

    ids, weights = lib.slot_topk
    rows, w = slot_members(ids, weights, int(slot))
    meta = lib.metadata
    top = meta.iloc[rows[:MEMBER_GRID]]
    smarts = slot_motif(key, int(slot), tuple(meta["smiles"].iloc[rows[:MOTIF_MEMBERS]]))
    st.subheader(f"Slot {slot}: {len(rows):,} members")
    if names.get(int(slot)):
        st.markdown(f"What it holds: **{names[int(slot)]}**")
    if smarts:
        st.markdown(f"Common motif of its top {MOTIF_MEMBERS} members (highlighted): "
                    f"`{motif_smiles(smarts)}`", help=f"SMARTS: {smarts}")
    cards = [Card(svg=common.depict_svg(r.smiles, highlight=smarts), title=str(r.id),
                  fields={"weight": float(wi)})
             for r, wi in zip(top.itertuples(index=False), w[:MEMBER_GRID])]
    st.html(grid_html(cards, columns=6))

    c1, c2 = st.columns(2)
    with c1:
        full = meta
        if len(lib) <= PROPERTY_LIMIT or common.properties_cached(lib):
            props = common.library_properties(key, _lib=lib)
            full = pd.concat([meta.reset_index(drop=True), props.add_suffix(
                "" if not set(props.columns) & set(meta.columns) else " (RDKit)")], axis=1)
        dists = property_distributions(full, rows)
        if dists:
            prop = st.selectbox("Property distribution", list(dists), key="mem_prop")
            sel, ref = dists[prop]
            st.plotly_chart(distribution_figure(sel, ref, name=prop, group=f"slot {slot}"),
                            width="stretch", key="mem_dist")
        else:
            st.caption("This library has no numeric property columns.")
    with c2:
        from mmsa.library.maps import load_map

        coords = load_map(lib)
        if coords is None:
            st.caption("This library's map is not computed yet: open the **Map** page once "
                       "(libraries built now get theirs at build time); the slot's members "
                       "will then be shown on it here.")
        else:
            st.plotly_chart(map_figure(coords, highlight=rows, height=380, point_size=3),
                            width="stretch", key="mem_map")
            st.caption(f"Slot {slot}'s members circled in red on the library map.")

    st.divider()
    st.subheader("A molecule's slot weights")
    if encoder is None or not common.encoder_matches(lib, encoder):
        st.info("The loaded model is not the one that built this library.")
        return
    q = st.text_input("SMILES", value=st.session_state.get(common.QUERY_KEY, ""), key="mem_query")
    if q.strip():
        try:
            sw = query_slot_weights(lib, q.strip())
        except MMSAError as exc:
            st.error(str(exc))
            return
        top_slot = int(np.argmax(sw))
        st.plotly_chart(slot_weights_figure(sw, title=f"slot weights of {q.strip()}"),
                        width="stretch", key="mem_query_chart")
        st.markdown(f"Strongest slot: **{top_slot}** (weight {sw[top_slot]:.3f}).")
