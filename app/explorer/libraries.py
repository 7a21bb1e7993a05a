"""Libraries page: the libraries on disk; upload a file and build one (columns chosen, progress
bar, failed rows listed); delete one (with confirmation)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer import common
from mmsa.types import Failure, InputError, MMSAError

#: accepted upload formats (by file name ending) -> reader format
FORMATS = {".sdf.gz": "sdf.gz", ".sdf": "sdf", ".csv": "csv", ".tsv": "tsv", ".smi": "smi",
           ".smiles": "smi", ".txt": "smi"}
DEFAULT_MAX_UPLOAD_MB = 200
SMILES_NAMES = ("smiles", "canonical_smiles", "smi", "isomeric_smiles", "canonical smiles")
ID_NAMES = ("id", "name", "compound id", "compound_id", "molecule_chembl_id", "title", "cid")


def max_upload_bytes() -> int:
    """Upload size limit: ``$MMSA_MAX_UPLOAD_MB`` megabytes (default 200)."""
    raw = os.environ.get("MMSA_MAX_UPLOAD_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        mb = DEFAULT_MAX_UPLOAD_MB
    return int(mb * 1024 * 1024)


def file_format(filename: str) -> str:
    """Format of an uploaded file from its name; InputError for anything we cannot read."""
    low = filename.lower()
    for ext, fmt in FORMATS.items():
        if low.endswith(ext):
            return fmt
    raise InputError(f"{filename!r} is not a format we read: upload a .smi, .csv, .tsv, .sdf or "
                     ".sdf.gz file")


def check_upload(filename: str, size: int) -> str:
    """Validate an upload before anything is written; returns its format."""
    fmt = file_format(filename)
    limit = max_upload_bytes()
    if size > limit:
        raise InputError(f"{filename!r} is {size / 2**20:.1f} MB; the limit is "
                         f"{limit / 2**20:.0f} MB (set MMSA_MAX_UPLOAD_MB to change it)")
    if size == 0:
        raise InputError(f"{filename!r} is empty")
    return fmt


def upload_columns(filename: str, data: bytes) -> list[str]:
    """Column names of a CSV/TSV upload (header line); [] for SMILES and SD files."""
    fmt = file_format(filename)
    if fmt not in ("csv", "tsv"):
        return []
    head = data[:65536].decode("utf-8", errors="replace").splitlines()
    if not head:
        return []
    import csv

    sep = "\t" if fmt == "tsv" else ","
    return [c.strip() for c in next(csv.reader([head[0]], delimiter=sep))]


def _guess(columns: list[str], names: tuple[str, ...]) -> str | None:
    low = {c.lower(): c for c in columns}
    for n in names:
        if n in low:
            return low[n]
    return None


def guess_smiles_column(columns: list[str]) -> str | None:
    return _guess(columns, SMILES_NAMES) or next((c for c in columns if "smiles" in c.lower()), None)


def guess_id_column(columns: list[str]) -> str | None:
    return _guess(columns, ID_NAMES)


def default_name(filename: str) -> str:
    """A valid library name from a file name (``My drugs.sdf.gz`` -> ``My_drugs``)."""
    stem = Path(filename).name
    for ext in sorted(FORMATS, key=len, reverse=True):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-") or "library"
    return stem[:64]


def estimate_rows(filename: str, data: bytes) -> int | None:
    """Rough molecule count of an upload, for the progress bar (None if unknown)."""
    fmt = file_format(filename)
    if fmt == "sdf":
        return data.count(b"$$$$") or None
    if fmt == "sdf.gz":
        return None
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return max(1, lines - (1 if fmt in ("csv", "tsv") else 0))


def build_from_upload(filename: str, data: bytes, name: str, *, smiles_col: str | None = None,
                      id_col: str | None = None, overwrite: bool = False, encoder=None,
                      root=None, progress=None):
    """Build library ``name`` from an uploaded file's bytes (a :class:`BuildReport`).

    The bytes go to a temporary file (kept only for the build); the store builds atomically, so
    any InputError/LibraryError (unreadable file, no SMILES column, all rows invalid, name
    taken) leaves nothing behind.
    """
    from mmsa.library import build_library, check_name

    check_upload(filename, len(data))
    check_name(name)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(filename).name).lstrip(".") or "upload"
    with tempfile.TemporaryDirectory(prefix="mmsa-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        return build_library(path, name, root=root, encoder=encoder, smiles_col=smiles_col or None,
                             id_col=id_col or None, overwrite=overwrite, progress=progress)


def failures_frame(failures: list[Failure]) -> pd.DataFrame:
    return pd.DataFrame([f.to_dict() for f in failures], columns=["row", "input", "reason"])


def libraries_frame(infos) -> pd.DataFrame:
    rows = []
    for i in infos:
        rows.append({
            "name": i.name, "molecules": i.count if i.ok else None,
            "failed rows": i.n_failed if i.ok else None, "index": i.index_type,
            "dim": i.dim, "model": (i.checkpoint_sha256 or "")[:12], "created": i.created,
            "source": ", ".join(Path(s).name for s in (i.sources or [])),
            "status": "ok" if i.ok else f"unreadable: {i.error}",
        })
    return pd.DataFrame(rows)


def _show_last_build() -> None:
    last = st.session_state.get("last_build")
    if not last:
        return
    st.success(last["message"])
    if last["failures"] is not None and len(last["failures"]):
        with st.expander(f"{len(last['failures'])} rows could not be added, and why", expanded=True):
            st.dataframe(last["failures"], hide_index=True, width="stretch")


def _build_default(encoder) -> None:
    from mmsa.library import ensure_default_library

    bar = common.ProgressBar("Building the approved-drugs library")
    try:
        name = ensure_default_library(common.indexes_root(), progress=bar, encoder=encoder)
    except MMSAError as exc:
        st.error(f"The default library could not be built: {exc}")
        return
    bar.done()
    if name:
        common.select_library(name)
        st.session_state["last_build"] = {"message": f"Built library **{name}**.", "failures": None}
        common.forget_library()
        st.rerun()


def upload_section(encoder) -> None:
    st.subheader("Add a library from a file")
    limit_mb = max_upload_bytes() / 2**20
    # a new key after each successful build empties the uploader
    up = st.file_uploader(f"A .smi, .csv, .tsv, .sdf or .sdf.gz file (up to {limit_mb:.0f} MB)",
                          key=f"upload_file_{st.session_state.get('uploads_built', 0)}")
    if up is None:
        return
    data = up.getvalue()
    try:
        check_upload(up.name, len(data))
    except InputError as exc:
        st.error(str(exc))
        return
    columns = upload_columns(up.name, data)
    c1, c2, c3 = st.columns(3)
    smiles_col = id_col = None
    if columns:
        guess = guess_smiles_column(columns)
        smiles_col = c1.selectbox("SMILES column", columns, key="upload_smiles_col",
                                  index=columns.index(guess) if guess in columns else 0)
        id_choices = ["(row number)", *columns]
        gid = guess_id_column(columns)
        id_col = c2.selectbox("ID column", id_choices, key="upload_id_col",
                              index=id_choices.index(gid) if gid in id_choices else 0)
        id_col = None if id_col == "(row number)" else id_col
    name = c3.text_input("Library name", value=default_name(up.name), key="upload_name")
    overwrite = st.checkbox("Replace a library of the same name", key="upload_overwrite")
    if st.button("Build library", type="primary", key="upload_build"):
        bar = common.ProgressBar(f"Embedding {up.name}", total_hint=estimate_rows(up.name, data))
        try:
            report = build_from_upload(up.name, data, name.strip(), smiles_col=smiles_col,
                                       id_col=id_col, overwrite=overwrite, encoder=encoder,
                                       root=common.indexes_root(), progress=bar)
        except MMSAError as exc:
            st.error(f"Nothing was stored: {exc}")
            return
        bar.done()
        common.forget_library(report.name)
        common.select_library(report.name)
        st.session_state["uploads_built"] = st.session_state.get("uploads_built", 0) + 1
        st.session_state["last_build"] = {
            "message": f"Built library **{report.name}**: {report.n_ok:,} molecules added, "
                       f"{report.n_failed:,} rows failed ({report.seconds:.1f} s).",
            "failures": failures_frame(report.failures),
        }
        st.rerun()


def delete_section(infos) -> None:
    st.subheader("Delete a library")
    names = [i.name for i in infos]
    if not names:
        return
    name = st.selectbox("Library to delete", names, key="delete_name", index=None,
                        placeholder="choose a library")
    if name is None:
        return
    sure = st.checkbox(f"Yes, delete **{name}** and its files permanently", key=f"delete_sure_{name}")
    if st.button("Delete", disabled=not sure, key="delete_button"):
        from mmsa.library import delete_library

        try:
            delete_library(name, root=common.indexes_root())
        except MMSAError as exc:
            st.error(str(exc))
            return
        common.forget_library(name)
        st.session_state["last_build"] = {"message": f"Deleted library **{name}**.", "failures": None}
        st.session_state.pop("delete_name", None)
        st.rerun()


def render() -> None:
    common.sidebar()
    st.title("Libraries")
    _show_last_build()
    encoder = common.get_encoder()
    infos = common.list_libraries()
    if infos:
        st.dataframe(libraries_frame(infos), hide_index=True, width="stretch")
        st.caption(f"Stored in {common.indexes_root()}. Pick the active library in the sidebar.")
    else:
        st.info("No library yet.")
        if encoder is not None and st.button("Build the default library (2,628 approved drugs)",
                                             key="build_default"):
            _build_default(encoder)
    if encoder is not None:
        upload_section(encoder)
    delete_section([i for i in infos])
