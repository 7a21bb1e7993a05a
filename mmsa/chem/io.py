"""Reading compound libraries the way chemists hand them over, in bounded-memory chunks.

Formats (from the file name; ``.gz`` may be added to any of them):

* ``.smi`` / ``.smiles`` / ``.txt``: one molecule a line, ``SMILES [whitespace ID]``; blank
  lines and ``#`` comments are skipped, as is a first line whose first word is ``smiles``.
* ``.csv`` / ``.tsv`` / ``.tab``: the SMILES column is given or found by name, ignoring case,
  spaces, ``_`` and ``-`` (smiles, canonical_smiles, isomeric_smiles, smi, ... then any column
  whose name contains "smiles"); the id column likewise (id, name, title, compound id, ...).
  Every other column is kept as a property.
* ``.sdf`` / ``.sd``: every record's data fields are kept as properties, its title line is
  the id (or the data field ``id_col`` when given).

Each input row gives either a record or a :class:`mmsa.types.Failure` (row, input, reason):
``row`` is the 0-based data row (CSV/TSV: rows after the header, counted by lines; SMILES
files: lines; SDF: records). A malformed CSV line (too many fields) is a failure too.
Empty files, unknown formats, a missing SMILES column and files without a single valid
molecule raise :class:`mmsa.types.InputError`.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.rdBase import BlockLogs

from mmsa.chem.standardize import standardize_mol, standardize_or_reason
from mmsa.types import Failure, InputError

__all__ = ["Chunk", "iter_library", "read_library", "detect_format", "RECORD_COLUMNS"]

log = logging.getLogger(__name__)

#: The leading columns of every ``Chunk.records`` frame; property columns follow.
RECORD_COLUMNS = ("row", "id", "input_smiles", "smiles")

_FORMATS = {
    ".smi": "smi", ".smiles": "smi", ".txt": "smi", ".ism": "smi", ".can": "smi",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".sdf": "sdf", ".sd": "sdf",
}
# Normalised names (lower case; spaces, "_" and "-" removed), in order of preference.
SMILES_NAMES = ("smiles", "canonicalsmiles", "isomericsmiles", "smi", "smilesstring",
                "molsmiles", "moleculesmiles", "structuresmiles", "canonical", "structure")
ID_NAMES = ("id", "name", "title", "compoundid", "compoundname", "molid", "moleculeid",
            "moleculename", "molname", "identifier", "cmpdid", "chemblid",
            "moleculechemblid", "zincid", "cid", "pubchemcid", "catalogid", "catalognumber",
            "drugname", "compound", "molecule")
_BAD_LINE = re.compile(r"Skipping line (\d+): (.*)")


@dataclass
class Chunk:
    """One block of a library.

    Attributes:
        records: DataFrame with ``row`` (int), ``id`` (str), ``input_smiles``, ``smiles``
            (canonical, standardised), then the input's property columns.
        failures: the rows of this block that gave no record, and why.
        start_row: first input row of the block; ``end_row``: one past its last.
    """

    records: pd.DataFrame
    failures: list[Failure] = field(default_factory=list)
    start_row: int = 0
    end_row: int = 0


def detect_format(path: str | Path) -> tuple[str, bool]:
    """``(format, gzipped)`` from the file name; format is "smi", "csv", "tsv" or "sdf".

    Raises:
        InputError: the extension is not a supported one.
    """
    name = Path(path).name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in _FORMATS:
        known = ", ".join(sorted(set(_FORMATS))) + " (optionally .gz)"
        raise InputError(f"{path}: unknown file type {suffix or '(none)'!r}; use one of {known}")
    return _FORMATS[suffix], gz


def iter_library(path: str | Path, smiles_col: str | None = None, id_col: str | None = None,
                 chunk_size: int = 10_000) -> Iterator[Chunk]:
    """Stream a library file as :class:`Chunk` s of at most ``chunk_size`` input rows.

    Memory stays bounded by the chunk size whatever the file size. Chunks that hold only
    failures are held back until the first valid molecule appears, so an all-invalid file
    raises before anything is yielded.

    Args:
        path: a .smi/.csv/.tsv/.sdf file, optionally gzipped.
        smiles_col: CSV/TSV column holding SMILES (matched ignoring case); found by name
            when ``None``. Ignored for SDF, whose records hold the structures.
        id_col: column (CSV/TSV) or SDF data field holding the user's ids; found by name for
            CSV/TSV when ``None``, the record title for SDF; row numbers where none.
        chunk_size: input rows per chunk.

    Raises:
        InputError: missing/empty/unknown file, missing column, or no valid molecule.
    """
    path = Path(path)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    fmt, gz = detect_format(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    if fmt == "smi":
        chunks = _iter_smi(path, gz, chunk_size)
    elif fmt == "sdf":
        if smiles_col:
            log.info("%s: smiles_col=%r ignored, SDF records hold the structures", path,
                     smiles_col)
        chunks = _iter_sdf(path, gz, id_col, chunk_size)
    else:
        chunks = _iter_table(path, "\t" if fmt == "tsv" else ",", smiles_col, id_col,
                             chunk_size)
    yield from _hold_back_until_valid(path, chunks)


def read_library(path: str | Path, smiles_col: str | None = None, id_col: str | None = None,
                 chunk_size: int = 10_000) -> tuple[pd.DataFrame, list[Failure]]:
    """The whole library as one ``(records, failures)``; see :func:`iter_library`."""
    frames, failures = [], []
    for chunk in iter_library(path, smiles_col=smiles_col, id_col=id_col,
                              chunk_size=chunk_size):
        frames.append(chunk.records)
        failures.extend(chunk.failures)
    frames = [f for f in frames if len(f)] or frames[:1]
    records = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return records.reset_index(drop=True), failures


def _hold_back_until_valid(path: Path, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    held: list[Chunk] = []
    seen_valid = False
    rows = 0
    for chunk in chunks:
        rows = max(rows, chunk.end_row)
        if seen_valid:
            yield chunk
        elif len(chunk.records):
            seen_valid = True
            yield from held
            held.clear()
            yield chunk
        else:
            held.append(chunk)
    if not seen_valid:
        failures = [f for c in held for f in c.failures]
        if not failures:
            raise InputError(f"{path}: no molecules in the file")
        raise InputError(f"{path}: none of the {len(failures)} molecules is valid "
                         f"(first: {failures[0]})")


# --------------------------------------------------------------------------- helpers


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


def find_column(columns, wanted: str | None, candidates: tuple[str, ...], what: str,
                path: Path, contains: str | None = None) -> str | None:
    """The column named ``wanted`` (ignoring case), else the first candidate present.

    Raises:
        InputError: ``wanted`` is given but absent.
    """
    columns = [str(c) for c in columns]
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)
    if wanted is not None:
        for c in columns:
            if c == wanted:
                return c
        for c in columns:
            if c.lower() == str(wanted).lower():
                return c
        if _norm(wanted) in by_norm:
            return by_norm[_norm(wanted)]
        raise InputError(f"{path}: no {what} column {wanted!r} (columns: {', '.join(columns)})")
    for cand in candidates:
        if cand in by_norm:
            return by_norm[cand]
    if contains:
        for c in columns:
            if contains in _norm(c):
                return c
    return None


def _records(rows, ids, inputs, smiles, props: pd.DataFrame | None) -> pd.DataFrame:
    frame = pd.DataFrame({
        "row": np.asarray(rows, dtype=np.int64),
        "id": pd.Series(ids, dtype=object).astype(str).to_numpy(),
        "input_smiles": pd.Series(inputs, dtype=object).astype(str).to_numpy(),
        "smiles": pd.Series(smiles, dtype=object).astype(str).to_numpy(),
    })
    if props is not None and len(props.columns):
        props = props.reset_index(drop=True)
        props.columns = [_safe_name(c) for c in props.columns]
        frame = pd.concat([frame, props], axis=1)
    return frame


def _safe_name(name) -> str:
    name = str(name)
    return f"{name}_input" if name in RECORD_COLUMNS else name


def _clean_id(value, row: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return str(row)
    text = str(value).strip()
    return text or str(row)


def _standardize_rows(rows: list[int], ids: list, inputs: list,
                      props: pd.DataFrame | None) -> tuple[pd.DataFrame, list[Failure]]:
    """Standardise SMILES text rows; failing rows become Failure records."""
    keep, out_rows, out_ids, out_in, out_smi, failures = [], [], [], [], [], []
    for k, (row, ident, text) in enumerate(zip(rows, ids, inputs)):
        if text is None or (isinstance(text, float) and np.isnan(text)):
            text = ""
        text = str(text)
        smiles, reason = standardize_or_reason(text)
        if smiles is None:
            failures.append(Failure(row, text, reason))
            continue
        keep.append(k)
        out_rows.append(row)
        out_ids.append(_clean_id(ident, row))
        out_in.append(text.strip())
        out_smi.append(smiles)
    sub = props.iloc[keep] if props is not None else None
    return _records(out_rows, out_ids, out_in, out_smi, sub), failures


# --------------------------------------------------------------------------- SMILES files


def _open_text(path: Path, gz: bool):
    if gz:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline=None)
    return open(path, encoding="utf-8", errors="replace", newline=None)


def _iter_smi(path: Path, gz: bool, chunk_size: int) -> Iterator[Chunk]:
    rows, ids, inputs = [], [], []
    start = 0
    first_content = True
    row = -1
    with _open_text(path, gz) as fh:
        for row, line in enumerate(fh):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split(None, 1)
            if first_content:
                first_content = False
                if _norm(parts[0]) in SMILES_NAMES:
                    continue  # a header line
            rows.append(row)
            inputs.append(parts[0])
            ids.append(parts[1].strip() if len(parts) > 1 else None)
            if len(rows) >= chunk_size:
                records, failures = _standardize_rows(rows, ids, inputs, None)
                yield Chunk(records, failures, start, row + 1)
                start = row + 1
                rows, ids, inputs = [], [], []
    if rows or start == 0:
        records, failures = _standardize_rows(rows, ids, inputs, None)
        yield Chunk(records, failures, start, row + 1)


# --------------------------------------------------------------------------- CSV / TSV


def _iter_table(path: Path, sep: str, smiles_col: str | None, id_col: str | None,
                chunk_size: int) -> Iterator[Chunk]:
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, compression="infer",
                             encoding_errors="replace")
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, UnicodeError, OSError) as exc:
        raise InputError(f"{path}: cannot read as {'TSV' if sep == chr(9) else 'CSV'}: {exc}"
                         ) from exc
    columns = list(header.columns)
    scol = find_column(columns, smiles_col, SMILES_NAMES, "SMILES", path, contains="smiles")
    if scol is None:
        raise InputError(f"{path}: no SMILES column found (columns: {', '.join(map(str, columns))});"
                         " name it 'smiles' or choose it")
    icol = find_column(columns, id_col, ID_NAMES, "id", path)
    if icol == scol:
        icol = None
    prop_cols = [c for c in columns if c not in (scol, icol)]
    dtypes = {scol: str} | ({icol: str} if icol is not None else {})

    reader = pd.read_csv(path, sep=sep, chunksize=chunk_size, dtype=dtypes,
                         on_bad_lines="warn", skip_blank_lines=False, compression="infer",
                         encoding_errors="replace")
    bad: dict[int, str] = {}  # data row -> reason, for malformed lines not yet reported
    next_row = 0
    with reader:
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                try:
                    frame = next(reader)
                except StopIteration:
                    frame = None
                except (pd.errors.ParserError, UnicodeError) as exc:
                    raise InputError(f"{path}: cannot parse near data row {next_row}: {exc}"
                                     ) from exc
            for w in caught:
                for m in _BAD_LINE.finditer(str(w.message)):
                    line = int(m.group(1))
                    bad[line - 2] = f"malformed line {line}: {m.group(2).strip()}"
            if frame is None:
                break
            start = next_row
            rows, malformed = [], []
            for _ in range(len(frame)):
                while next_row in bad:
                    malformed.append(Failure(next_row, "", bad.pop(next_row)))
                    next_row += 1
                rows.append(next_row)
                next_row += 1
            ids = frame[icol].tolist() if icol is not None else [None] * len(frame)
            records, failures = _standardize_rows(rows, ids, frame[scol].tolist(),
                                                  frame[prop_cols])
            failures = sorted(malformed + failures, key=lambda f: f.row)
            yield Chunk(records, failures, start, next_row)
    if bad or next_row == 0:
        rest = [Failure(r, "", reason) for r, reason in sorted(bad.items())]
        end = max([next_row] + [f.row + 1 for f in rest])
        yield Chunk(_records([], [], [], [], pd.DataFrame(columns=prop_cols)), rest,
                    next_row, end)


# --------------------------------------------------------------------------- SDF


def _sdf_props(mol: Chem.Mol) -> dict[str, str]:
    return {name: mol.GetProp(name) for name in mol.GetPropNames()}


def _iter_sdf(path: Path, gz: bool, id_col: str | None, chunk_size: int) -> Iterator[Chunk]:
    opener = gzip.open if gz else open
    with opener(path, "rb") as raw:
        stream = io.BufferedReader(raw) if gz else raw
        supplier = Chem.ForwardSDMolSupplier(stream, sanitize=False, removeHs=False)
        rows, ids, inputs, smiles, props, failures = [], [], [], [], [], []
        start = 0
        row = -1
        while True:
            with BlockLogs():
                try:
                    mol = next(supplier)
                except StopIteration:
                    break
                except (RuntimeError, OSError, EOFError) as exc:
                    raise InputError(f"{path}: cannot read SDF after record {row}: {exc}"
                                     ) from exc
                row += 1
                record = _sdf_record(mol, row, id_col)
            if isinstance(record, Failure):
                failures.append(record)
            else:
                ident, text, smi, fields = record
                rows.append(row)
                ids.append(ident)
                inputs.append(text)
                smiles.append(smi)
                props.append(fields)
            if row + 1 - start >= chunk_size:
                yield Chunk(_sdf_frame(rows, ids, inputs, smiles, props), failures, start,
                            row + 1)
                rows, ids, inputs, smiles, props, failures = [], [], [], [], [], []
                start = row + 1
        if rows or failures or start == 0:
            yield Chunk(_sdf_frame(rows, ids, inputs, smiles, props), failures, start, row + 1)


def _sdf_record(mol: Chem.Mol | None, row: int, id_col: str | None):
    """(id, input SMILES, standardised SMILES, data fields) or a Failure."""
    if mol is None:
        return Failure(row, "", "unreadable SDF record")
    title = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    fields = _sdf_props(mol)
    ident = fields.get(id_col, "") if id_col else title
    label = title or (fields.get(id_col, "") if id_col else "")
    if mol.GetNumAtoms() == 0:
        return Failure(row, label, "SDF record has no atoms")
    try:
        Chem.SanitizeMol(mol)
        mol = Chem.RemoveHs(mol)
    except Exception as exc:  # RDKit raises several sanitisation exception types
        return Failure(row, label, f"invalid molecule: {str(exc).strip() or type(exc).__name__}")
    try:
        text = Chem.MolToSmiles(mol)
        smi = Chem.MolToSmiles(standardize_mol(mol))
    except InputError as exc:
        return Failure(row, label, str(exc))
    except Exception as exc:  # noqa: BLE001 - any RDKit error becomes this record's reason
        return Failure(row, label, f"cannot write SMILES: {exc}")
    return _clean_id(ident, row), text, smi, fields


def _sdf_frame(rows, ids, inputs, smiles, props: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(props) if props else pd.DataFrame(index=range(0))
    for col in table.columns:
        converted = pd.to_numeric(table[col], errors="coerce")
        if converted.notna().sum() == table[col].notna().sum():
            table[col] = converted
    return _records(rows, ids, inputs, smiles, table)
