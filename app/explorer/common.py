"""Shared app plumbing: cached model/library loading, the library picker, depictions, progress."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import streamlit as st

from mmsa.types import MMSAError

log = logging.getLogger("mmsa.app")

#: session-state keys shared between pages
LIBRARY_KEY = "library"          # name of the selected library
PICKER_KEY = "library_picker"    # the sidebar widget that changes it
QUERY_KEY = "last_query"         # last query SMILES that was searched successfully
FOCUS_KEY = "focus_row"          # library row picked for the Hyperedges page
FOCUS_PENDING_KEY = "focus_pending"  # a row another page sends to the Hyperedges page
SEARCH_INPUT_KEY = "search_query"


def checkpoint_path() -> str | None:
    """Checkpoint the app embeds with: ``$MMSA_CHECKPOINT``, else the shipped one (None)."""
    return os.environ.get("MMSA_CHECKPOINT") or None


def indexes_root() -> Path:
    from mmsa.paths import indexes_dir

    return indexes_dir()


@st.cache_resource(show_spinner="Loading the MMSA model\u2026")
def _load_encoder(path: str | None):
    from mmsa.model.encoder import Encoder

    return Encoder.load(path)


def get_encoder(show: bool = True):
    """The MMSA encoder, loaded once per process; None (and a message) if it cannot load."""
    try:
        return _load_encoder(checkpoint_path())
    except MMSAError as exc:
        if show:
            st.error(f"The MMSA model could not be loaded: {exc}")
        return None


def list_libraries():
    """LibraryInfo rows of the libraries on disk (cheap: manifests only)."""
    from mmsa.library import list_libraries as _list

    return _list(indexes_root())


def _stamp(name: str) -> float:
    """Changes whenever library ``name`` is rebuilt or appended to (its manifest's mtime)."""
    try:
        return (indexes_root() / name / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Opening the library\u2026", max_entries=8)
def _open_library(name: str, root: str, stamp: float, encoder_hash: str | None, _encoder=None):
    from mmsa.library import open_library

    return open_library(name, root=root, encoder=_encoder)


def library_key(lib) -> tuple[str, float]:
    """Hashable identity of an opened library (for st.cache_data keys)."""
    return (lib.name, _stamp(lib.name))


def encoder_matches(lib, encoder) -> bool:
    """Whether ``encoder`` is the checkpoint that built ``lib`` (needed to embed queries)."""
    return encoder is not None and encoder.checkpoint_hash == lib.checkpoint_hash


def open_selected(show: bool = True):
    """The library picked in the sidebar, opened once (None and a message if none/unreadable)."""
    name = st.session_state.get(LIBRARY_KEY)
    if not name:
        if show:
            st.info("No library yet. Build one on the **Libraries** page (upload a file, or "
                    "build the approved-drugs default library).")
        return None
    encoder = get_encoder(show=False)
    infos = {i.name: i for i in list_libraries()}
    info = infos.get(name)
    use = encoder if (encoder is not None and info is not None
                      and info.checkpoint_sha256 == encoder.checkpoint_hash) else None
    try:
        return _open_library(name, str(indexes_root()), _stamp(name),
                             None if use is None else use.checkpoint_hash, _encoder=use)
    except MMSAError as exc:
        if show:
            st.error(f"Library **{name}** cannot be opened: {exc}")
        return None


def select_library(name: str | None) -> None:
    """Make ``name`` the active library (the sidebar picker follows on the next run)."""
    if name is None:
        st.session_state.pop(LIBRARY_KEY, None)
    else:
        st.session_state[LIBRARY_KEY] = name  # the sidebar picker is redrawn from it


def focus_on(row: int) -> None:
    """Send library ``row`` to the Hyperedges page (its id box shows it on the next run)."""
    st.session_state[FOCUS_KEY] = int(row)
    st.session_state[FOCUS_PENDING_KEY] = int(row)


def forget_library(name: str | None = None) -> None:
    """Drop cached library objects (after a delete or rebuild)."""
    _open_library.clear()
    if name and st.session_state.get(LIBRARY_KEY) == name:
        select_library(None)


def sidebar() -> None:
    """The library picker shared by every page (each page draws it first).

    The choice lives in ``st.session_state[LIBRARY_KEY]`` (not a widget key), so it survives
    page switches; the picker widget copies into it when the user changes it.
    """
    infos = [i for i in list_libraries() if i.ok]
    names = [i.name for i in infos]
    counts = {i.name: i.count for i in infos}
    with st.sidebar:
        st.markdown("### MMSA Explorer")
        if not names:
            select_library(None)
            st.caption("No library yet: see **Libraries**.")
            return
        if st.session_state.get(LIBRARY_KEY) not in names:
            select_library(names[0])

        def picked() -> None:
            st.session_state[LIBRARY_KEY] = st.session_state[PICKER_KEY]

        # The selected library (LIBRARY_KEY) is the truth; the picker is redrawn from it on
        # every run. (Each page draws its own picker widget: on a page switch, or after the
        # library list changed, the browser's copy of the widget would otherwise come back
        # at its default, the first library, while the pages use the selected one.) A user's
        # change reaches LIBRARY_KEY through on_change before this line runs.
        st.session_state[PICKER_KEY] = st.session_state[LIBRARY_KEY]
        st.selectbox("Library", names, key=PICKER_KEY, on_change=picked,
                     format_func=lambda n: f"{n} \u00b7 {counts[n]:,}",
                     help="The library every page works on (name \u00b7 molecules)")


# ---------------------------------------------------------------- depictions

@st.cache_data(max_entries=20_000, show_spinner=False)
def depict_svg(smiles: str, query: str | None = None, substructure: bool = False,
               highlight: str | None = None, width: int = 260, height: int = 200) -> str | None:
    """SVG of ``smiles`` (None if it cannot be drawn).

    ``query``: a query SMILES to align the drawing to, with the part of the molecule that
    matches it highlighted (``substructure=True``: ``query`` is a SMARTS/SMILES pattern);
    ``highlight``: a SMARTS motif to highlight (e.g. a hyperedge's MCS).
    """
    from mmsa.viz.depiction import pattern_svg, shared_svg

    if query and substructure:  # the pattern's matches; aligned when it is a molecule
        return pattern_svg(smiles, query, width, height)
    if query:  # similarity hit: drawn like the query, the part it shares highlighted
        return shared_svg(smiles, query, width, height)
    return pattern_svg(smiles, highlight or None, width, height, align=False)


def svg_data_uri(svg: str | None) -> str | None:
    """A data: URI for an SVG (for st.column_config.ImageColumn and st.image)."""
    import base64

    if not svg:
        return None
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


# ---------------------------------------------------------------- progress

class ProgressBar:
    """``progress(done, total)`` callback driving an st.progress bar.

    ``total_hint`` is used when the callee does not know its total (e.g. a streamed file).
    """

    def __init__(self, label: str, total_hint: int | None = None, unit: str = "molecules"):
        self.label, self.total_hint, self.unit = label, total_hint, unit
        self.bar = st.progress(0.0, text=label)
        self.start = time.monotonic()

    def __call__(self, done: int, total: int | None = None) -> None:
        total = total or self.total_hint
        frac = min(1.0, done / total) if total else 0.0
        secs = time.monotonic() - self.start
        of = f" of {total:,}" if total else ""
        self.bar.progress(frac, text=f"{self.label}: {done:,}{of} {self.unit} ({secs:.0f} s)")

    def done(self, text: str | None = None) -> None:
        self.bar.progress(1.0, text=text or f"{self.label}: done")


def show_error(exc: Exception, what: str = "") -> None:
    """A deliberate error (MMSAError) as a message; anything else is re-raised."""
    if isinstance(exc, MMSAError):
        st.error(f"{what}{exc}")
        return
    raise exc


# ---------------------------------------------------------------- derived data (cached)

@st.cache_data(max_entries=8, show_spinner=False)
def _library_properties(key, _lib):
    from mmsa.library.properties import library_properties as compute

    return compute(_lib)


def properties_cached(lib) -> bool:
    """Whether the library's drug-like properties are already computed (on disk)."""
    from mmsa.library.properties import CACHE_FILE

    return (lib.cache_dir / CACHE_FILE).is_file()


def library_properties(key, _lib):
    """MW, cLogP, TPSA, HBD, HBA, rotatable bonds, QED of every molecule: computed once with
    a progress bar (drawn here, not inside a cached function, so it is never replayed) and
    cached in the library's folder, then in memory."""
    from mmsa.library.properties import CACHE_FILE
    from mmsa.library.properties import library_properties as compute

    if not (_lib.cache_dir / CACHE_FILE).is_file():
        bar = ProgressBar("Computing drug-like properties")
        compute(_lib, progress=bar)
        bar.bar.empty()
    return _library_properties(key, _lib=_lib)


@st.cache_data(max_entries=256, show_spinner=False)
def rows_properties(key, rows: tuple[int, ...], _lib):
    """The drug-like properties of some library rows (hits): computed for them only."""
    from mmsa.library.properties import rows_properties as compute

    return compute(_lib, list(rows))


@st.cache_data(max_entries=8, show_spinner="Naming the memory slots\u2026")
def slot_labels(key, _lib) -> dict[int, str]:
    """A label per used memory slot (:func:`mmsa.library.slot_names.library_slot_labels`:
    its most enriched scaffold and most separating property; cached on disk, normally at
    build time), then in memory."""
    from mmsa.library.slot_names import library_slot_labels

    return library_slot_labels(_lib)


def property_filter(prefix: str) -> dict[str, tuple[float, float]] | None:
    """Range sliders for the drug-like properties (inside the caller's container); the
    ranges the user narrowed, or None when filtering is off."""
    from mmsa.chem.properties import PROPERTIES, PROPERTY_HELP

    if not st.toggle("Filter by drug-like properties", key=f"{prefix}_filter_on",
                     help="MW, cLogP, TPSA, HBD, HBA, rotatable bonds and QED, computed with "
                          "RDKit from each parent structure"):
        return None
    cols = st.columns(4)
    ranges = {}
    for i, name in enumerate(PROPERTIES):
        lo, hi, step = FILTER_RANGES[name]
        low, high = cols[i % 4].slider(name, lo, hi, (lo, hi), step=step,
                                       key=f"{prefix}_filter_{name}", help=PROPERTY_HELP[name])
        if (low, high) != (lo, hi):
            ranges[name] = (float(low) if low > lo else -float("inf"),
                            float(high) if high < hi else float("inf"))
    return ranges


#: slider bounds per property (the ends mean "no limit")
FILTER_RANGES = {"MW": (0.0, 1000.0, 10.0), "cLogP": (-5.0, 10.0, 0.5),
                 "TPSA": (0.0, 250.0, 5.0), "HBD": (0, 15, 1), "HBA": (0, 20, 1),
                 "rotatable bonds": (0, 20, 1), "QED": (0.0, 1.0, 0.05)}
