"""Map page: the library's UMAP map (cached), coloured by property / memory slot / cluster, the
search query placed on it, box/lasso selections shown as a grid and exportable, HTML export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import common
from mmsa.types import MMSAError
from mmsa.viz.export import map_html, to_csv_bytes, to_sdf_bytes
from mmsa.viz.figures import hover_texts, map_figure
from mmsa.viz.grid import Card, grid_html

NONE, SLOT, CLUSTER = "(none)", "memory slot", "cluster"
RDKIT = "RDKit: "  # prefix of the computed drug-like properties among the colour options
HOVER_PROPS = 2           # property values shown in each point's hover label
HTML_PICTURE_LIMIT = 3_000  # the HTML export embeds structure pictures up to this size
SELECTION_GRID = 24
HOVER_COMPONENT = "mmsa_map_hover"

# A bridge without UI: it listens to plotly's hover events on the map chart (found by its
# Streamlit key class) and sends the hovered point's library row (its customdata) back as
# component state, debounced; the fragment around it then draws that molecule.
_HOVER_JS = """
export default function(component) {
  const { data, setStateValue } = component;
  const target = (data && data.target) || "map_chart";
  let timer = null;
  let last = null;
  function attach() {
    const gd = document.querySelector(`.st-key-${target} .js-plotly-plot`) ||
               document.querySelector(".js-plotly-plot");
    if (!gd || typeof gd.on !== "function" || gd.__mmsaHover) return;
    gd.__mmsaHover = true;
    gd.on("plotly_hover", (ev) => {
      const p = ev && ev.points && ev.points[0];
      if (!p || p.customdata === undefined || p.customdata === null) return;
      const row = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
      if (row === last) return;
      clearTimeout(timer);
      timer = setTimeout(() => { last = row; setStateValue("row", row); }, 120);
    });
  }
  attach();
  const poll = setInterval(attach, 400);
  return () => { clearInterval(poll); clearTimeout(timer); };
}
"""


# registered once per process; the mount function re-registers it on a new runtime if needed
_hover_bridge = st.components.v2.component(HOVER_COMPONENT, js=_HOVER_JS)


@st.fragment
def hover_panel(lib, colour_name: str, colour) -> None:
    """The molecule under the mouse on the map (only this fragment re-runs on hover)."""
    state = _hover_bridge(key="map_hover", data={"target": "map_chart"},
                          on_row_change=lambda: None, height=0)
    row = getattr(state, "row", None) if state is not None else None
    if row is None or not 0 <= int(row) < len(lib):
        st.caption("Hover over a point to see its structure here.")
        return
    row = int(row)
    meta = lib.metadata
    fields = {"row": row}
    if colour is not None and colour_name != NONE:
        fields[colour_name] = colour[row]
    card = Card(svg=common.depict_svg(str(meta["smiles"].iloc[row]), width=240, height=190),
                title=str(meta["id"].iloc[row]), subtitle=str(meta["smiles"].iloc[row]),
                fields=fields)
    st.html(grid_html([card], columns=1))


def colour_options(metadata: pd.DataFrame) -> list[str]:
    """What the map can be coloured by: nothing, memory slot, cluster, then each property
    column (numeric, or categorical with few values)."""
    from mmsa.library.slots import NON_PROPERTY_COLUMNS

    opts = [NONE, SLOT, CLUSTER]
    for c in metadata.columns:
        if c in NON_PROPERTY_COLUMNS:
            continue
        col = metadata[c]
        if pd.api.types.is_numeric_dtype(col) or col.nunique(dropna=True) <= 40:
            opts.append(c)
    from mmsa.chem.properties import PROPERTIES

    return opts + [RDKIT + p for p in PROPERTIES]


def colour_values(lib, option: str) -> np.ndarray | None:
    """[n] values for a colour option (None for no colouring)."""
    if option == NONE:
        return None
    if option == SLOT:
        ids, _ = lib.slot_topk
        top1 = np.asarray(ids)[:, 0]
        names = common.slot_labels(common.library_key(lib), _lib=lib)
        return np.array([f"slot {s}: {names.get(int(s), '')}"[:60] for s in top1], dtype=object)
    if option.startswith(RDKIT):
        props = common.library_properties(common.library_key(lib), _lib=lib)
        return props[option.removeprefix(RDKIT)].to_numpy(dtype=np.float64, na_value=np.nan)
    if option == CLUSTER:
        from mmsa.library.maps import N_CLUSTERS, cluster_labels

        return np.char.add("cluster ", cluster_labels(lib, N_CLUSTERS).astype(str))
    col = lib.metadata[option]
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    return col.astype("string").fillna("(missing)").to_numpy(dtype=object)


def map_coordinates(lib, progress=None) -> np.ndarray:
    """Cached map of ``lib`` (computed and cached on first use)."""
    from mmsa.library.maps import ensure_map

    return ensure_map(lib, progress=progress)


def cached_coordinates(lib) -> np.ndarray | None:
    from mmsa.library.maps import load_map

    return load_map(lib)


def query_position(lib, query: str, coords: np.ndarray) -> np.ndarray | None:
    """Where ``query`` lies on the map: float [2] placed from its nearest library molecules
    (the library's encoder embeds it; InputError if it cannot be parsed or embedded)."""
    from mmsa.chem.standardize import standardize_smiles
    from mmsa.library.maps import place_points

    vec = lib.embed_query(standardize_smiles(query))
    return place_points(vec[None, :], np.asarray(lib.vectors), coords)[0]


@st.cache_data(max_entries=16, show_spinner=False)
def _hover(key, option, _lib, _colour):
    meta = _lib.metadata
    from mmsa.library.slots import property_columns

    extra = {"SMILES": meta["smiles"].to_numpy()}
    if _colour is not None and option != NONE:
        extra[option] = _colour
    for c in property_columns(meta)[:HOVER_PROPS]:
        if c != option:
            extra[c] = meta[c].to_numpy()
    return hover_texts(meta["id"].to_numpy(), extra)


def selected_rows(event) -> list[int]:
    """Library rows of a plotly selection event (points carry their row as customdata)."""
    if not event:
        return []
    sel = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if not sel:
        return []
    points = sel.get("points", []) if isinstance(sel, dict) else sel.points
    rows = []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, list | tuple):
            cd = cd[0] if cd else None
        if cd is not None:
            rows.append(int(cd))
    return sorted(set(rows))


def selection_frame(lib, rows: list[int]) -> pd.DataFrame:
    return lib.metadata.iloc[rows].reset_index(drop=True)


def render() -> None:
    common.sidebar()
    st.title("Map")
    lib = common.open_selected()
    if lib is None:
        return
    coords = cached_coordinates(lib)
    if coords is None:
        note = st.empty()
        note.info(f"Computing the map of **{lib.name}** once ({len(lib):,} molecules, seeded "
                  "UMAP); it is cached in the library's folder.")
        bar = common.ProgressBar("UMAP", unit="steps")
        try:
            coords = map_coordinates(lib, progress=bar)
        except MMSAError as exc:
            st.error(f"The map could not be computed: {exc}")
            return
        note.empty()
        bar.bar.empty()

    options = colour_options(lib.metadata)
    c1, c2 = st.columns([2, 3])
    option = c1.selectbox("Colour by", options, key="map_colour")
    colour = colour_values(lib, option)
    hover = _hover(common.library_key(lib), option, _lib=lib, _colour=colour)

    query = st.session_state.get(common.QUERY_KEY)
    qxy = None
    encoder = common.get_encoder(show=False)
    if query and common.encoder_matches(lib, encoder):
        try:
            qxy = query_position(lib, query, coords)
        except MMSAError:
            qxy = None
    c2.markdown(f"**{len(lib):,}** molecules."
                + (f" The star is your last query `{query}`." if qxy is not None else
                   " Search on the **Search** page to see your query on the map.")
                + " Hover over a point to see its structure; drag a box or lasso (or click) "
                "to select molecules.")

    with st.expander("Filter the map by drug-like properties"):
        ranges = common.property_filter("map")
    keep = None
    if ranges:
        from mmsa.library.properties import filter_mask

        keep = filter_mask(common.library_properties(common.library_key(lib), _lib=lib), ranges)
        st.caption(f"{int(keep.sum()):,} of {len(lib):,} molecules pass the filters (the others "
                   "are grey).")
    fig = map_figure(coords, color=colour, color_name=option, hover=hover, query_xy=qxy,
                     query_label=f"query: {query}" if query else "query", keep=keep)
    left, right = st.columns([3, 1])
    with left:
        event = st.plotly_chart(fig, key="map_chart", on_select="rerun",
                                selection_mode=("points", "box", "lasso"), width="stretch")
    with right:
        with st.container(key="map_hover_panel"):
            hover_panel(lib, option, colour)
    rows = selected_rows(event)
    if rows:
        sel = selection_frame(lib, rows)
        st.subheader(f"Selection: {len(rows):,} molecules")
        cards = [Card(svg=common.depict_svg(r.smiles), title=str(r.id), subtitle=f"row {r.row}")
                 for r in sel.head(SELECTION_GRID).itertuples(index=False)]
        st.html(grid_html(cards, columns=6))
        s1, s2, s3 = st.columns([1, 1, 3])
        s1.download_button("Selection CSV", lambda: to_csv_bytes(sel),
                           file_name=f"{lib.name}-selection.csv", mime="text/csv",
                           key="dl_sel_csv", on_click="ignore")
        s2.download_button("Selection SDF", lambda: to_sdf_bytes(sel),
                           file_name=f"{lib.name}-selection.sdf", mime="chemical/x-mdl-sdfile",
                           key="dl_sel_sdf", on_click="ignore")
        if s3.button("Show the first one's hyperedge", key="map_to_hyperedge"):
            common.focus_on(int(sel["row"].iloc[0]))
            st.switch_page("pages/hyperedges.py")

    st.divider()

    def html_page() -> str:  # generated when the button is clicked
        pictures = None
        if len(lib) <= HTML_PICTURE_LIMIT:
            pictures = [common.depict_svg(s) for s in lib.metadata["smiles"]]
        return map_html(fig, title=f"MMSA map of {lib.name}", pictures=pictures)

    st.download_button(
        "Download the map (self-contained HTML)", html_page, file_name=f"{lib.name}-map.html",
        mime="text/html", key="dl_map_html", on_click="ignore",
        help="One HTML file that works offline; hovering a point shows its structure"
             + (f" (libraries up to {HTML_PICTURE_LIMIT:,} molecules)" if len(lib) > HTML_PICTURE_LIMIT else ""))
