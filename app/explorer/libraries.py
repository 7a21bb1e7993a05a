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

#: upload formats the page names (the reader, mmsa.chem.io, decides what it reads; any of them
#: may be gzipped)
FORMAT_TEXT = ".smi, .csv, .tsv or .sdf file (.smiles, .txt, .ism, .tab, .sd too; .gz for any)"
DEFAULT_MAX_UPLOAD_MB = 200
TITLE = "(title line)"      # SDF: the record's first line as the id
ROW_NUMBER = "(row number)"
#: normalised column names that hold a compound's name (preferred as ids when textual)
NAME_LIKE = ("name", "compoundname", "moleculename", "molname", "drugname", "prefname",
             "genericname", "commonname", "title", "compound", "molecule")
_SNIFF_BYTES = 65536


def max_upload_bytes() -> int:
    """Upload size limit: ``$MMSA_MAX_UPLOAD_MB`` megabytes (default 200)."""
    raw = os.environ.get("MMSA_MAX_UPLOAD_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        mb = DEFAULT_MAX_UPLOAD_MB
    return int(mb * 1024 * 1024)


def file_format(filename: str) -> str:
    """Format of an uploaded file from its name ("smi", "csv", "tsv", "sdf", plus ".gz" when
    gzipped), as the reader (:func:`mmsa.chem.io.detect_format`) sees it; InputError for
    anything it cannot read."""
    from mmsa.chem.io import detect_format

    try:
        fmt, gz = detect_format(Path(filename).name)
    except InputError:
        raise InputError(f"{Path(filename).name!r} is not a format we read: upload a "
                         f"{FORMAT_TEXT}") from None
    return fmt + (".gz" if gz else "")


def _head(filename: str, data: bytes, size: int = _SNIFF_BYTES) -> bytes:
    """The first ``size`` bytes of the upload's content (gunzipped when it is .gz)."""
    if not file_format(filename).endswith(".gz"):
        return data[:size]
    import zlib

    if data[:2] != b"\x1f\x8b":
        raise InputError(f"{filename!r} ends in .gz but is not a gzip file")
    try:
        return zlib.decompressobj(wbits=31).decompress(data, size)
    except zlib.error as exc:
        raise InputError(f"{filename!r} is not a readable gzip file ({exc})") from None


def sniff_text(filename: str, data: bytes) -> str:
    """Check that an upload is text, not a binary file with a molecule file's name; returns
    the encoding to read it with ("utf-8", or "cp1252" for 8-bit text that is not UTF-8).

    Raises:
        InputError: the content is binary (NUL bytes or control characters).
    """
    head = _head(filename, data)
    fmt = file_format(filename).removesuffix(".gz").upper()
    binary = InputError(f"{filename!r} is not a text {fmt} file (its content is binary: an "
                        "image, archive or spreadsheet?). Save it as text (CSV, TSV, SMILES "
                        "or SD file) and upload that.")
    if b"\x00" in head:
        raise binary
    controls = sum(head.count(bytes([c])) for c in range(32) if c not in (9, 10, 12, 13))
    if head and controls / len(head) > 0.01:
        raise binary
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4 and len(head) == _SNIFF_BYTES:
            return "utf-8"  # a character cut at the end of the sample
    return "cp1252"


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


def upload_preview(filename: str, data: bytes, rows: int = 200
                   ) -> tuple[list[str], dict[str, list[str]]]:
    """Column names of an upload and a sample of their values (first ``rows`` records).

    CSV/TSV: the header's columns; SDF: the data field names of the first records, after
    :data:`TITLE` (the record's title line); SMILES files: no columns.
    """
    import csv
    import io

    fmt = file_format(filename).removesuffix(".gz")
    head = _head(filename, data)
    text = head.decode(sniff_text(filename, data), errors="replace")
    if fmt in ("csv", "tsv"):
        lines = text.lstrip("\ufeff").splitlines()
        if len(head) == _SNIFF_BYTES and len(lines) > 1:
            lines = lines[:-1]  # the last line may be cut
        delimiter = sniff_upload(filename, data).delimiter or ("\t" if fmt == "tsv" else ",")
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
        try:
            header = [c.strip() for c in next(reader)]
        except StopIteration:
            return [], {}
        samples: dict[str, list[str]] = {c: [] for c in header}
        for i, rec in enumerate(reader):
            if i >= rows:
                break
            for c, v in zip(header, rec):
                samples[c].append(v)
        return header, samples
    if fmt == "sdf":
        records = text.split("$$$$")
        if len(head) == _SNIFF_BYTES and len(records) > 1:
            records = records[:-1]
        fields: dict[str, list[str]] = {TITLE: []}
        for rec in records[:rows]:
            lines = rec.lstrip("\r\n").splitlines()
            if not any(line.strip() for line in lines):
                continue
            fields[TITLE].append(lines[0].strip() if lines else "")
            for j, line in enumerate(lines):
                m = re.match(r"^>.*?<([^>]+)>", line)
                if m:
                    value = lines[j + 1].strip() if j + 1 < len(lines) else ""
                    fields.setdefault(m.group(1), []).append(value)
        return list(fields), fields
    return [], {}


def sniff_upload(filename: str, data: bytes):
    """How the reader will read a CSV/TSV/SMILES upload: :func:`mmsa.chem.io.sniff_table` on
    its first lines (delimiter, SMILES column by name or content, id column); None for SDF."""
    from mmsa.chem.io import sniff_table

    fmt = file_format(filename).removesuffix(".gz")
    if fmt == "sdf":
        return None
    text = _head(filename, data).decode(sniff_text(filename, data), errors="replace")
    try:
        return sniff_table(text, fmt)
    except InputError:
        return None


def upload_columns(filename: str, data: bytes) -> list[str]:
    """Column names of a CSV/TSV upload (header line), SDF data fields after :data:`TITLE`;
    [] for SMILES files."""
    return upload_preview(filename, data)[0]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", str(name).lower())


def guess_smiles_column(columns: list[str]) -> str | None:
    """The SMILES column by name, as the reader finds it (mmsa.chem.io.SMILES_NAMES)."""
    from mmsa.chem.io import SMILES_NAMES

    by_norm = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)
    for n in SMILES_NAMES:
        if n in by_norm:
            return by_norm[n]
    return next((c for c in columns if "smiles" in c.lower()), None)


def _textual(values: list[str]) -> bool:
    """Mostly non-numeric, non-empty values."""
    vals = [v.strip() for v in values if v and v.strip()]
    if not vals:
        return False
    numeric = 0
    for v in vals:
        try:
            float(v)
            numeric += 1
        except ValueError:
            pass
    return numeric / len(vals) < 0.5


def _distinct(values: list[str]) -> bool:
    vals = [v.strip() for v in values if v and v.strip()]
    return bool(vals) and len(set(vals)) >= 0.9 * len(vals)


def guess_id_column(columns: list[str], samples: dict[str, list[str]] | None = None) -> str | None:
    """The id column to offer first.

    Names a chemist reads (a textual column called name, compound_name, title, ...) come
    before codes (id, CID, ChEMBL id), whatever their order in the file; with ``samples``
    (values per column) a numeric column (a PubChem CID) loses to a textual one, and a
    column whose values repeat is not an id. The SDF title line (:data:`TITLE`) is kept
    when its values are distinct.
    """
    from mmsa.chem.io import ID_NAMES

    by_norm: dict[str, str] = {}
    for c in columns:
        if c != TITLE:
            by_norm.setdefault(_norm(c), c)
    names = [by_norm[n] for n in NAME_LIKE if n in by_norm]
    codes = [by_norm[n] for n in ID_NAMES if n in by_norm and by_norm[n] not in names]
    if samples is None:
        ranked = names + codes
        return ranked[0] if ranked else (TITLE if TITLE in columns else None)
    cands = [c for c in names + codes if _distinct(samples.get(c, []))]
    title_ok = TITLE in columns and _distinct(samples.get(TITLE, []))
    for c in cands:  # a textual name
        if c in names and _textual(samples[c]):
            return c
    if title_ok and _textual(samples[TITLE]):
        return TITLE
    for c in cands:  # a textual code (ChEMBL id, ZINC id)
        if _textual(samples[c]):
            return c
    if title_ok:
        return TITLE
    return cands[0] if cands else None


def default_name(filename: str) -> str:
    """A valid library name from a file name (``My drugs.sdf.gz`` -> ``My_drugs``)."""
    stem = Path(filename).name
    if stem.lower().endswith(".gz"):
        stem = stem[:-3]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-") or "library"
    return stem[:64]


def estimate_rows(filename: str, data: bytes) -> int | None:
    """Rough molecule count of an upload, for the progress bar (None if unknown)."""
    fmt = file_format(filename)
    if fmt.endswith(".gz"):
        return None
    if fmt == "sdf":
        return data.count(b"$$$$") or None
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return max(1, lines - (1 if fmt in ("csv", "tsv") else 0))


OVERWRITE_LABEL = "Replace a library of the same name"


def name_taken_message(name: str) -> str:
    return (f"A library named **{name}** already exists. Tick \"{OVERWRITE_LABEL}\" to "
            "rebuild it from this file, or choose another name.")


def _clean_message(exc: MMSAError, tmp: Path, filename: str, name: str) -> MMSAError:
    """``exc`` with the server's temporary path replaced by the uploaded file's name, and
    command-line advice replaced by the page's words."""
    text = str(exc).replace(str(tmp / Path(filename).name), filename)
    text = re.sub(re.escape(str(tmp)) + r"[^\s:'\"]*", filename, text)
    if "--overwrite" in text or "overwrite=True" in text:
        text = name_taken_message(name)
    out = type(exc)(text)
    return out


def build_from_upload(filename: str, data: bytes, name: str, *, smiles_col: str | None = None,
                      id_col: str | None = None, overwrite: bool = False, encoder=None,
                      root=None, progress=None):
    """Build library ``name`` from an uploaded file's bytes (a :class:`BuildReport`).

    The bytes are checked (a binary file with a molecule file's name is refused; 8-bit text
    that is not UTF-8 is read as Windows-1252), written to a temporary file (kept only for
    the build) and built atomically, so any InputError/LibraryError (unreadable file, no
    SMILES column, all rows invalid, name taken) leaves nothing behind. Messages name the
    uploaded file, never the server's temporary path.
    """
    from mmsa.library import build_library, check_name, library_path

    fmt = check_upload(filename, len(data))
    check_name(name)
    if not overwrite and library_path(name, root).exists():
        raise InputError(name_taken_message(name))
    encoding = sniff_text(filename, data)
    if encoding != "utf-8" and not fmt.endswith(".gz"):
        data = data.decode(encoding, errors="replace").encode("utf-8")
    if id_col == TITLE:
        id_col = None
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(filename).name).lstrip(".") or "upload"
    with tempfile.TemporaryDirectory(prefix="mmsa-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        try:
            return build_library(path, name, root=root, encoder=encoder,
                                 smiles_col=smiles_col or None, id_col=id_col or None,
                                 overwrite=overwrite, progress=progress)
        except MMSAError as exc:
            raise _clean_message(exc, Path(tmp), safe, name) from None


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


#: what the page calls each step of mmsa.library.views while it runs
VIEW_LABELS = {"map": "Computing the map (UMAP)",
               "clusters": "Clustering the embeddings (k-means)",
               "properties": "Computing drug-like properties",
               "slot names": "Naming the memory slots",
               "hyperedge motifs": "Finding the shared motif of the top hyperedges"}


def prepare_views(name: str):
    """Compute library ``name``'s map and page caches now (:func:`mmsa.library.views.
    prepare_views`), a progress bar per step, so its first Map/Memory/Hyperedges visit is
    fast; returns the :class:`ViewsReport` (a step that failed is computed on first use), or
    None when the library cannot be opened."""
    from mmsa.library import open_library
    from mmsa.library.views import STEP_UNITS
    from mmsa.library.views import prepare_views as prepare

    try:
        lib = open_library(name, root=common.indexes_root())
    except MMSAError as exc:  # the pages will say so when they open it
        st.warning(f"Library **{name}** was built, but cannot be opened now: {exc}")
        return None
    bars = []

    def bar(step: str):
        bars.append(common.ProgressBar(VIEW_LABELS.get(step, step),
                                       unit=STEP_UNITS.get(step, "steps")))
        return bars[-1]

    report = prepare(lib, progress=bar)
    for b in bars:
        b.bar.empty()
    return report


def views_message(report) -> str:
    """One sentence on what :func:`prepare_views` made ready (and what it left for later)."""
    if report is None:
        return ""
    ready = [s for s in report.seconds]
    text = (f" Ready for the pages: {', '.join(ready)} "
            f"({sum(report.seconds.values()):.1f} s)." if ready else "")
    if report.skipped:
        text += " Computed on first use instead: " + ", ".join(report.skipped) + "."
    return text


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
        prepare_views(name)
        common.select_library(name)
        st.session_state["last_build"] = {"message": f"Built library **{name}**.", "failures": None}
        common.forget_library()
        st.rerun()


def upload_section(encoder) -> None:
    st.subheader("Add a library from a file")
    limit_mb = max_upload_bytes() / 2**20
    # a new key after each successful build empties the uploader
    up = st.file_uploader(f"A {FORMAT_TEXT}, up to {limit_mb:.0f} MB",
                          key=f"upload_file_{st.session_state.get('uploads_built', 0)}")
    if up is None:
        return
    data = up.getvalue()
    try:
        check_upload(up.name, len(data))
        columns, samples = upload_preview(up.name, data)
    except InputError as exc:
        st.error(str(exc))
        return
    c1, c2, c3 = st.columns(3)
    smiles_col = id_col = sniffed = None
    is_sdf = file_format(up.name).startswith("sdf")
    if columns and not is_sdf:
        sniffed = sniff_upload(up.name, data)
        guess = guess_smiles_column(columns) or (sniffed.smiles_column if sniffed else None)
        smiles_col = c1.selectbox("SMILES column", columns, key="upload_smiles_col",
                                  index=columns.index(guess) if guess in columns else 0)
    if columns:
        id_choices = columns if is_sdf else [ROW_NUMBER, *[c for c in columns if c != smiles_col]]
        gid = guess_id_column(columns, samples)
        if gid is None and not is_sdf and sniffed is not None:
            gid = sniffed.id_column  # the reader's own choice
        id_col = c2.selectbox("ID field" if is_sdf else "ID column", id_choices,
                              key="upload_id_col",
                              index=id_choices.index(gid) if gid in id_choices else 0,
                              help="What names each molecule on the pages and in exports. "
                                   "Guessed: a textual name column first (compound_name, "
                                   "title, ...), then a code (id, CID).")
        if is_sdf and id_col != TITLE:
            c1.caption(f"Ids from the SD field **{id_col}**.")
        id_col = None if id_col == ROW_NUMBER else id_col
    name = c3.text_input("Library name", value=default_name(up.name), key="upload_name")
    overwrite = st.checkbox(OVERWRITE_LABEL, key="upload_overwrite")
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
        views = prepare_views(report.name)
        common.forget_library(report.name)
        common.select_library(report.name)
        st.session_state["uploads_built"] = st.session_state.get("uploads_built", 0) + 1
        st.session_state["last_build"] = {
            "message": f"Built library **{report.name}**: {report.n_ok:,} molecules added, "
                       f"{report.n_failed:,} rows failed ({report.seconds:.1f} s)."
                       + views_message(views),
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
