"""Reading compound libraries the way chemists (and their tools) hand them over, in
bounded-memory chunks.

Formats (from the file name, :func:`detect_format`; ``.gz`` may be added to any of them):

* ``.smi`` / ``.smiles`` / ``.ism`` / ``.can`` / ``.txt``: one molecule a line, ``SMILES
  [whitespace ID]`` or ``ID whitespace SMILES`` (the order is found by content, see
  :func:`sniff_table`); blank lines and ``#`` comments are skipped, as is a header line
  (a first line that names a SMILES field, e.g. ``SMILES Name`` or ``ID smiles``).
* ``.csv`` / ``.tsv`` / ``.tab``: the delimiter is sniffed among ``, ; \\t |`` (the
  extension's own is preferred on a tie); the SMILES column is given, or found by name
  ignoring case, spaces, ``_`` and ``-`` (smiles, canonical_smiles, ... then any column whose
  name contains "smiles"), or else by content (the column whose sampled values parse best as
  SMILES). The id column likewise (by name: id, name, title, compound id, ...). Every other
  column is kept as a property; numeric columns become numbers, decimal commas included
  (``5,1``) when the delimiter is not a comma. Column names are cleaned of control
  characters and ANSI escape codes; names that clash with :data:`RECORD_COLUMNS` or repeat
  are renamed (``row`` -> ``row_input``, ``a`` -> ``a_2``); see :attr:`ReadInfo.renamed`.
* ``.sdf`` / ``.sd``: every record's data fields are kept as properties, its title line is
  the id (or the data field ``id_col`` when given). Records are split on ``$$$$`` lines
  before RDKit sees them, so a malformed record fails alone.

What was used (delimiter, SMILES/id columns and how they were found, renamed columns) is a
:class:`ReadInfo`, from :func:`inspect_library` or on every :attr:`Chunk.info`;
:meth:`ReadInfo.describe` is the one line the CLI prints and the app can show.

The row contract: ``row`` is the 0-based input row (SMILES files: lines; CSV/TSV: records
after the header; SDF: records). Each row of a chunk's ``[start_row, end_row)`` is exactly
one of: a record, a :class:`mmsa.types.Failure` (row, input, reason), or a skipped line
(blank, ``#`` comment, header; counted in :attr:`Chunk.skipped`). Malformed CSV lines
(too many fields), lines longer than :data:`MAX_LINE_CHARS`, SMILES longer than
:data:`MAX_SMILES_CHARS` and unreadable SDF records are failures; the input echoed in a
failure is clipped to :data:`MAX_ECHO_CHARS`. Empty files, unknown formats, a missing SMILES
column and files without a single valid molecule raise :class:`mmsa.types.InputError`.
"""

from __future__ import annotations

import csv
import gzip
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.rdBase import BlockLogs

from mmsa.chem.standardize import standardize_mol, standardize_or_reason
from mmsa.types import Failure, InputError

__all__ = [
    "Chunk", "ReadInfo", "Sniffed", "iter_library", "read_library", "inspect_library",
    "detect_format", "sniff_table", "find_column", "printable", "clip", "FORMATS",
    "RECORD_COLUMNS", "SMILES_NAMES", "ID_NAMES", "MAX_LINE_CHARS", "MAX_SMILES_CHARS",
    "MAX_SDF_RECORD_CHARS", "MAX_ECHO_CHARS",
]

log = logging.getLogger(__name__)

#: The leading columns of every ``Chunk.records`` frame; property columns follow.
RECORD_COLUMNS = ("row", "id", "input_smiles", "smiles")

#: File extension (lower case, without ``.gz``) -> format read: "smi", "csv", "tsv", "sdf".
FORMATS = {
    ".smi": "smi", ".smiles": "smi", ".txt": "smi", ".ism": "smi", ".can": "smi",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".sdf": "sdf", ".sd": "sdf",
}
_FORMATS = FORMATS  # the old private name
# Normalised names (lower case; spaces, "_" and "-" removed), in order of preference.
SMILES_NAMES = ("smiles", "canonicalsmiles", "isomericsmiles", "smi", "smilesstring",
                "molsmiles", "moleculesmiles", "structuresmiles", "canonical", "structure")
ID_NAMES = ("id", "name", "title", "compoundid", "compoundname", "molid", "moleculeid",
            "moleculename", "molname", "identifier", "cmpdid", "chemblid",
            "moleculechemblid", "zincid", "cid", "pubchemcid", "catalogid", "catalognumber",
            "drugname", "compound", "molecule")

#: A physical line longer than this (characters) fails its row unread; memory stays bounded.
MAX_LINE_CHARS = 100_000
#: A SMILES field longer than this fails its row without being parsed.
MAX_SMILES_CHARS = 10_000
#: An SDF record longer than this (characters, all lines) fails unparsed.
MAX_SDF_RECORD_CHARS = 10_000_000
#: Input text echoed in failures and messages is clipped to this many characters.
MAX_ECHO_CHARS = 200
#: A quoted CSV field may span at most this many lines (a stray quote then fails one row).
MAX_RECORD_LINES = 100
#: Lines read to sniff the delimiter and find the columns.
SAMPLE_LINES = 200

_DELIMITERS = (",", "\t", ";", "|")
_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                 "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                 "nan", "null"})
_DECIMAL_COMMA = re.compile(r"[+-]?(\d+,\d*|,\d+|\d+)([eE][+-]?\d+)?")
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


# --------------------------------------------------------------------------- public types


@dataclass
class ReadInfo:
    """How a library file is read: what :func:`inspect_library` found, on every chunk.

    Attributes:
        format: "smi", "csv", "tsv" or "sdf"; ``gzipped``: whether the file is gzip.
        delimiter: the CSV/TSV delimiter used (``","``, ``";"``, ``"\\t"``, ``"|"``); ``None``
            for SMILES files (whitespace) and SDF.
        smiles_column: CSV/TSV: the (cleaned) column name; SMILES files: the 0-based field
            position (0: ``SMILES ID``, 1: ``ID SMILES``); ``None`` for SDF.
        id_column: like ``smiles_column``, ``None`` where there is none (ids are row numbers),
            or the SDF data field given as ``id_col``.
        smiles_found_by: "given" (``smiles_col``), "name", "content", "position" (SMILES
            file, SMILES first by default) or "record" (SDF).
        header: whether the first line is a header (always for CSV/TSV).
        columns: CSV/TSV: the cleaned, unique column names in file order.
        decimal_comma: property columns read as numbers with decimal commas (in the sample).
        renamed: original column name (control characters escaped) -> name used, for
            every column cleaned of control characters, repeated, or clashing with
            :data:`RECORD_COLUMNS` (SDF: filled in as records are read, so complete on the
            last chunk's ``info``, empty from :func:`inspect_library`).
    """

    format: str
    gzipped: bool = False
    delimiter: str | None = None
    smiles_column: str | int | None = None
    id_column: str | int | None = None
    smiles_found_by: str = "name"
    header: bool = False
    columns: list[str] = field(default_factory=list)
    decimal_comma: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One printable line, e.g. ``CSV, delimiter ';', SMILES column 'smiles' (by name),
        id column 'id', decimal commas in 'pIC50'``."""
        kind = self.format.upper() + (" (gzip)" if self.gzipped else "")
        if self.format == "sdf":
            ident = f"data field {self.id_column!r}" if self.id_column else "record titles"
            return f"{kind}, structures from the records, ids from {ident}"
        if self.format == "smi":
            order = "SMILES then id" if self.smiles_column == 0 else "id then SMILES"
            how = "by content" if self.smiles_found_by == "content" else (
                "from the header" if self.smiles_found_by == "name" else "default order")
            head = ", header line skipped" if self.header else ""
            return f"{kind}, whitespace-separated, {order} ({how}){head}"
        delim = {"\t": "tab"}.get(self.delimiter or "", self.delimiter)
        parts = [kind, f"delimiter {delim!r}" if delim != "tab" else "delimiter tab",
                 f"SMILES column {self.smiles_column!r} (by {self.smiles_found_by})"]
        parts.append(f"id column {self.id_column!r}" if self.id_column is not None
                     else "ids are row numbers")
        if self.decimal_comma:
            parts.append("decimal commas in " + ", ".join(map(repr, self.decimal_comma)))
        if self.renamed:
            parts.append("renamed " + ", ".join(f"{k!r} -> {v!r}"
                                                for k, v in self.renamed.items()))
        return printable(", ".join(parts), limit=2_000)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class Sniffed(NamedTuple):
    """What :func:`sniff_table` found: ``(delimiter, smiles_column, id_column)``."""

    delimiter: str | None
    smiles_column: str | int | None
    id_column: str | int | None


@dataclass
class Chunk:
    """One block of a library.

    Attributes:
        records: DataFrame with ``row`` (int), ``id`` (str), ``input_smiles``, ``smiles``
            (canonical, standardised), then the input's property columns.
        failures: the rows of this block that gave no record, and why (in row order).
        start_row: first input row of the block; ``end_row``: one past its last.
        skipped: rows of the block that are neither (blank lines, comments, a header).
        info: how the file is read (the same object on every chunk).
    """

    records: pd.DataFrame
    failures: list[Failure] = field(default_factory=list)
    start_row: int = 0
    end_row: int = 0
    skipped: int = 0
    info: ReadInfo | None = None


# --------------------------------------------------------------------------- small helpers


def printable(text, limit: int | None = MAX_ECHO_CHARS) -> str:
    """``text`` safe to print on a terminal or a page: ANSI escape sequences removed, other
    control characters (newlines and tabs included) replaced by a space, clipped to
    ``limit`` characters (:func:`clip`; ``None``: no limit)."""
    text = _ANSI.sub("", str(text))
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return clip(text, limit) if limit is not None else text


def clip(text, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was when cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _escape(text: str) -> str:
    """Control characters as ``\\xNN`` escapes: shows what a name held, prints safely."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256
                   else f"\\u{ord(ch):04x}" for ch in str(text))


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


def detect_format(path: str | Path) -> tuple[str, bool]:
    """``(format, gzipped)`` from a file name or path (the file need not exist).

    ``format`` is "smi", "csv", "tsv" or "sdf", from the extension (case ignored): see
    :data:`FORMATS` (.smi .smiles .ism .can .txt / .csv / .tsv .tab / .sdf .sd), each
    optionally followed by ``.gz``. ``detect_format("Lib.SD.GZ") == ("sdf", True)``.

    Raises:
        InputError: the extension is not a supported one.
    """
    name = Path(str(path)).name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in FORMATS:
        known = ", ".join(sorted(set(FORMATS))) + " (optionally .gz)"
        raise InputError(f"{printable(path)}: unknown file type "
                         f"{printable(suffix) or '(none)'!r}; use one of {known}")
    return FORMATS[suffix], gz


def find_column(columns, wanted: str | None, candidates: tuple[str, ...], what: str,
                path: Path | str, contains: str | None = None) -> str | None:
    """The column named ``wanted`` (exactly, else ignoring case, else ignoring case, spaces,
    ``_`` and ``-``), else the first of ``candidates`` (normalised names) present, else the
    first column whose normalised name contains ``contains``; ``None`` when none is.

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
        clean = printable(wanted).strip()
        for key in (_norm(wanted), _norm(clean)):
            if key in by_norm:
                return by_norm[key]
        raise InputError(f"{printable(path)}: no {what} column {clean!r} (columns: "
                         f"{printable(', '.join(columns), limit=1_000)})")
    for cand in candidates:
        if cand in by_norm:
            return by_norm[cand]
    if contains:
        for c in columns:
            if contains in _norm(c):
                return c
    return None


def _parses(text: str) -> bool:
    text = text.strip()
    if not text or len(text) > MAX_SMILES_CHARS or text.lower() in ("nan", "na", "none"):
        return False
    with BlockLogs():
        mol = Chem.MolFromSmiles(text)
    return mol is not None and mol.GetNumAtoms() > 0


def _parse_rate(values: list[str]) -> float:
    values = [v for v in values if v.strip() and v.strip() not in _NA]
    if not values:
        return 0.0
    return sum(_parses(v) for v in values) / len(values)


# --------------------------------------------------------------------------- sniffing


def _clean_names(raw: list[str]) -> tuple[list[str], dict[str, str]]:
    """Printable, non-empty, unique column names, and the renames made."""
    names, renamed, used = [], {}, set()
    for i, r in enumerate(raw):
        name = printable(r, limit=None).strip()[:MAX_ECHO_CHARS] or f"column_{i + 1}"
        base, k = name, 2
        while name in used:
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        names.append(name)
        if name != r:
            renamed[_escape(r)[:MAX_ECHO_CHARS]] = name
    return names, renamed


def _property_names(names: list[str], skip: set[int]) -> tuple[dict[int, str], dict[str, str]]:
    """Column index -> property name for every column not in ``skip``: names clashing with
    :data:`RECORD_COLUMNS` get ``_input`` (then ``_2``, ``_3``... until unique)."""
    used = set(RECORD_COLUMNS)
    out: dict[int, str] = {}
    for i, n in enumerate(names):
        if i not in skip and n not in used:
            out[i] = n
            used.add(n)
    renamed = {}
    for i, n in enumerate(names):
        if i in skip or i in out:
            continue
        base = f"{n}_input" if n in RECORD_COLUMNS else n
        cand, k = base, 2
        while cand in used:
            cand = f"{base}_{k}"
            k += 1
        out[i] = cand
        used.add(cand)
        renamed[n] = cand
    return dict(sorted(out.items())), renamed


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def _sniff_delimiter(lines: list[str], preferred: str) -> str:
    order = [preferred] + [d for d in _DELIMITERS if d != preferred]
    best, best_score = preferred, 0.0
    for d in order:
        counts = [len(_split(line, d)) for line in lines]
        if not counts or counts[0] < 2:
            continue
        score = sum(c == counts[0] for c in counts) / len(counts)
        if score > best_score + 1e-9:
            best, best_score = d, score
    return best


def _sniff_smi(lines: list[str]) -> tuple[int, int | None, bool, str]:
    """(smiles position, id position, header?, found_by) for SMILES-file lines."""
    content = [t for t in (line.strip() for line in lines) if t and not t.startswith("#")]
    if not content:
        return 0, None, False, "position"
    first = content[0].split()
    header, pos, how = False, None, "position"
    if _norm(first[0]) in SMILES_NAMES:
        header, pos, how = True, 0, "name"
    elif len(first) > 1 and _norm(first[-1]) in SMILES_NAMES:
        header, pos, how = True, 1, "name"
    body = content[1:] if header else content
    two = [t.split() for t in body]
    has_id = any(len(p) > 1 for p in two) or (header and len(first) > 1)
    if pos is None:
        pos = 0
        multi = [p for p in two if len(p) > 1]
        if multi:
            head = _parse_rate([p[0] for p in multi])
            tail = _parse_rate([p[-1] for p in multi])
            if tail > head and tail >= 0.5:
                pos, how = 1, "content"
    return pos, (1 - pos if has_id else None), header, how


def _sniff(lines: list[str], fmt: str, smiles_col=None, id_col=None, path="input") -> dict:
    """Everything :func:`sniff_table` and :func:`inspect_library` report, from the first
    lines of a file (BOM removed)."""
    if fmt == "smi":
        pos, ipos, header, how = _sniff_smi(lines)
        return dict(delimiter=None, smiles_column=pos, id_column=ipos, header=header,
                    smiles_found_by=how)
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise InputError(f"{printable(path)}: the file is empty")
    delimiter = _sniff_delimiter(lines, "\t" if fmt == "tsv" else ",")
    names, renamed = _clean_names(_split(lines[0], delimiter))
    rows = [_split(line, delimiter) for line in lines[1:]]
    scol = find_column(names, smiles_col, SMILES_NAMES, "SMILES", path, contains="smiles")
    how = "given" if smiles_col is not None else "name"
    if scol is None:
        rates = [_parse_rate([r[i] for r in rows if i < len(r)]) for i in range(len(names))]
        if rates and max(rates) >= 0.5:
            scol, how = names[int(np.argmax(rates))], "content"
    icol = find_column(names, id_col, ID_NAMES, "id", path)
    if icol == scol:
        icol = None
    skip = {names.index(c) for c in (scol, icol) if c is not None}
    props, clash = _property_names(names, skip)
    decimal = []
    if delimiter != ",":
        for i, name in props.items():
            values = [r[i] for r in rows if i < len(r)]
            if _numeric(values, True)[1]:
                decimal.append(name)
    return dict(delimiter=delimiter, smiles_column=scol, id_column=icol, header=True,
                smiles_found_by=how, columns=names, decimal_comma=decimal,
                renamed=renamed | {k: v for k, v in clash.items()}, props=props)


def sniff_table(sample_text: str, fmt: str = "csv", smiles_col: str | None = None,
                id_col: str | None = None) -> Sniffed:
    """Delimiter and SMILES/id columns of a table, from the first lines of its text.

    Pure (no file access): the app can call it on the first few KB of an upload.

    Args:
        sample_text: the start of the file as text (a BOM is dropped; a cut last line is
            harmless). About :data:`SAMPLE_LINES` lines are enough.
        fmt: "csv" or "tsv" (a delimited table with a header; the extension's delimiter is
            preferred on a tie) or "smi" (whitespace-separated SMILES file).
        smiles_col, id_col: names the user chose (checked, matched as the reader does).

    Returns:
        ``Sniffed(delimiter, smiles_column, id_column)``. Tables: the delimiter among
        ``, \\t ; |`` that splits the header into 2+ fields and the most lines into as many;
        column names as the reader will name them (cleaned of control characters); the
        SMILES column by name, else by content (the column whose sampled values parse best
        with RDKit, if at least half do); ``None`` where none is found. SMILES files:
        delimiter ``None`` and 0-based field positions, ``(None, 0, 1)`` for ``SMILES ID``
        lines, ``(None, 1, 0)`` for ``ID SMILES`` (id ``None`` when lines hold one field).

    Raises:
        InputError: a given ``smiles_col``/``id_col`` is not in the header.
    """
    lines = sample_text.lstrip("\ufeff").splitlines()[:SAMPLE_LINES]
    found = _sniff(lines, fmt, smiles_col, id_col, path="sample")
    return Sniffed(found["delimiter"], found["smiles_column"], found["id_column"])


def inspect_library(path: str | Path, smiles_col: str | None = None,
                    id_col: str | None = None) -> ReadInfo:
    """How :func:`iter_library` will read ``path`` (it reads only the first lines).

    Raises:
        InputError: missing, empty or unknown file; a missing or unfound SMILES column.
    """
    return _inspect(Path(path), smiles_col, id_col)[0]


def _inspect(path: Path, smiles_col, id_col) -> tuple[ReadInfo, dict[int, str]]:
    fmt, gz = detect_format(path)
    if not path.is_file():
        raise InputError(f"{printable(path)}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{printable(path)}: the file is empty")
    if fmt == "sdf":
        if smiles_col:
            log.info("%s: smiles_col=%r ignored, SDF records hold the structures",
                     printable(path), printable(smiles_col))
        return ReadInfo("sdf", gz, id_column=id_col, smiles_found_by="record"), {}
    lines = []
    with _open_text(path, gz) as fh:
        for text, overflow in _bounded_lines(fh, path, 0):
            if overflow and fmt != "smi" and not any(line.strip() for line in lines):
                raise InputError(f"{printable(path)}: the header line is longer than "
                                 f"{MAX_LINE_CHARS} characters ({overflow})")
            lines.append("" if overflow else text)
            if len(lines) >= SAMPLE_LINES:
                break
    if not any(line.strip() for line in lines):
        raise InputError(f"{printable(path)}: the file is empty (no text)")
    found = _sniff(lines, fmt, smiles_col, id_col, path)
    props = found.pop("props", {})
    if fmt != "smi" and found["smiles_column"] is None:
        raise InputError(
            f"{printable(path)}: no SMILES column found (columns: "
            f"{printable(', '.join(found['columns']), limit=1_000)}; none has values that "
            "parse as SMILES); name it 'smiles' or choose it")
    return ReadInfo(fmt, gz, **found), props


# --------------------------------------------------------------------------- reading


def iter_library(path: str | Path, smiles_col: str | None = None, id_col: str | None = None,
                 chunk_size: int = 10_000) -> Iterator[Chunk]:
    """Stream a library file as :class:`Chunk` s of at most ``chunk_size`` input rows.

    Memory stays bounded by the chunk size (and :data:`MAX_LINE_CHARS`) whatever the file
    size. Chunks that hold only failures are held back until the first valid molecule
    appears, so an all-invalid file raises before anything is yielded.

    Args:
        path: a .smi/.csv/.tsv/.sdf file (or another extension of :data:`FORMATS`),
            optionally gzipped.
        smiles_col: CSV/TSV column holding SMILES (matched ignoring case); found by name,
            then by content, when ``None``. Ignored for SDF, whose records hold structures.
        id_col: column (CSV/TSV) or SDF data field holding the user's ids; found by name for
            CSV/TSV when ``None``, the record title for SDF; row numbers where none.
        chunk_size: input rows per chunk.

    Raises:
        InputError: missing/empty/unknown file, missing column, or no valid molecule.
    """
    path = Path(path)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    info, props = _inspect(path, smiles_col, id_col)
    if info.format == "smi":
        chunks = _iter_smi(path, info, chunk_size)
    elif info.format == "sdf":
        chunks = _iter_sdf(path, info, chunk_size)
    else:
        chunks = _iter_table(path, info, props, chunk_size)
    yield from _hold_back_until_valid(path, chunks)


def read_library(path: str | Path, smiles_col: str | None = None, id_col: str | None = None,
                 chunk_size: int = 10_000) -> tuple[pd.DataFrame, list[Failure]]:
    """The whole library as one ``(records, failures)``; see :func:`iter_library`
    (:func:`inspect_library` says how it was read)."""
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
    for chunk in chunks:
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
            raise InputError(f"{printable(path)}: no molecules in the file")
        raise InputError(f"{printable(path)}: none of the {len(failures)} molecules is valid "
                         f"(first: {failures[0]})")


def _open_text(path: Path, gz: bool):
    # utf-8-sig: a byte-order mark before the first line is not part of it
    if gz:
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline=None)
    return open(path, encoding="utf-8-sig", errors="replace", newline=None)


def _bounded_lines(fh, path: Path, first_row: int) -> Iterator[tuple[str, int]]:
    """``(line, 0)`` per physical line (newline stripped), or ``(first characters,
    full length)`` for a line over :data:`MAX_LINE_CHARS`, whose rest is read and dropped."""
    n = first_row
    while True:
        try:
            line = fh.readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            if len(line) <= MAX_LINE_CHARS or line.endswith("\n"):
                yield line.rstrip("\r\n"), 0
            else:
                head, length = line[:MAX_ECHO_CHARS], len(line)
                while line and not line.endswith("\n"):
                    line = fh.readline(1 << 20)
                    length += len(line)
                yield head, length - line.endswith("\n")
        except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip
            raise InputError(f"{printable(path)}: cannot read past line {n + 1} "
                             f"(truncated or corrupt file?): {printable(exc)}") from exc
        n += 1


def _too_long(row: int, head: str, length: int) -> Failure:
    return Failure(row, f"{head}... ({length} characters)",
                   f"line longer than {MAX_LINE_CHARS} characters ({length}); not read")


def _clean_id(value, row: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return str(row)
    text = str(value).strip()
    return text if text and text not in _NA else str(row)


def _records(rows, ids, inputs, smiles, props: pd.DataFrame | None) -> pd.DataFrame:
    frame = pd.DataFrame({
        "row": np.asarray(rows, dtype=np.int64),
        "id": pd.Series(ids, dtype=object).astype(str).to_numpy(),
        "input_smiles": pd.Series(inputs, dtype=object).astype(str).to_numpy(),
        "smiles": pd.Series(smiles, dtype=object).astype(str).to_numpy(),
    })
    if props is not None and len(props.columns):
        props = props.reset_index(drop=True)
        frame = pd.concat([frame, props], axis=1)
    return frame


def _standardize(row: int, text) -> tuple[str | None, Failure | None]:
    """(standardised SMILES, None) or (None, Failure) for one SMILES field."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        text = ""
    text = str(text)
    if len(text.strip()) > MAX_SMILES_CHARS:
        return None, Failure(row, clip(text.strip()),
                             f"SMILES longer than {MAX_SMILES_CHARS} characters")
    smiles, reason = standardize_or_reason(text)
    if smiles is None:
        return None, Failure(row, clip(text), reason)
    return smiles, None


def _numeric(values: list[str], decimal_comma: bool) -> tuple[list | None, bool]:
    """Values as numbers (NaN for missing) when every present one is a number, else None;
    and whether decimal commas were read."""
    present = [v.strip() for v in values if v.strip() not in _NA]
    if not present:
        return None, False
    comma = False
    if decimal_comma and any("," in v for v in present):
        if not all(_DECIMAL_COMMA.fullmatch(v) for v in present):
            return None, False
        comma = True
    conv = pd.to_numeric(pd.Series([v.strip().replace(",", ".") if comma else v.strip()
                                    for v in values]).where(
        lambda s: ~s.isin(_NA)), errors="coerce")
    if conv.notna().sum() != len(present):
        return None, False
    return conv, comma


def _props_frame(columns: dict[str, list[str]], decimal_comma: bool) -> pd.DataFrame:
    out = {}
    for name, values in columns.items():
        conv, _ = _numeric(values, decimal_comma)
        if conv is not None:
            out[name] = conv.to_numpy()
        else:
            out[name] = pd.Series(values, dtype=object).where(
                lambda s: ~s.str.strip().isin(_NA), np.nan).to_numpy()
    return pd.DataFrame(out, index=range(len(next(iter(columns.values()), []))))


# --------------------------------------------------------------------------- SMILES files


def _iter_smi(path: Path, info: ReadInfo, chunk_size: int) -> Iterator[Chunk]:
    id_first = info.smiles_column == 1
    header_pending = info.header
    start, row = 0, -1
    rows, ids, inputs, smiles, failures, skipped = [], [], [], [], [], 0

    def flush(end: int) -> Chunk:
        return Chunk(_records(rows, ids, inputs, smiles, None), failures, start, end,
                     skipped, info)

    with _open_text(path, info.gzipped) as fh:
        for row, (line, overflow) in enumerate(_bounded_lines(fh, path, 0)):
            text = line.strip()
            if overflow:
                failures.append(_too_long(row, line, overflow))
            elif not text or text.startswith("#"):
                skipped += 1
            elif header_pending:
                header_pending = False
                skipped += 1
            else:
                parts = text.rsplit(None, 1) if id_first else text.split(None, 1)
                if id_first and len(parts) == 2:
                    ident, smi_text = parts
                else:
                    smi_text, ident = parts[0], (parts[1] if len(parts) > 1 else None)
                smi, failure = _standardize(row, smi_text)
                if failure is not None:
                    failures.append(failure)
                else:
                    rows.append(row)
                    ids.append(_clean_id(ident, row))
                    inputs.append(smi_text)
                    smiles.append(smi)
            if row + 1 - start >= chunk_size:
                yield flush(row + 1)
                start = row + 1
                rows, ids, inputs, smiles, failures, skipped = [], [], [], [], [], 0
    if row + 1 > start or start == 0:
        yield flush(row + 1)


# --------------------------------------------------------------------------- CSV / TSV


def _open_quote(text: str, delimiter: str) -> bool:
    """Whether ``text`` ends inside a quoted field."""
    try:
        next(csv.reader([text], delimiter=delimiter, strict=True), None)
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _table_records(fh, path: Path, delimiter: str) -> Iterator[tuple[int, str, list[str] | None,
                                                                     Failure | None]]:
    """One item per CSV record after the header: ``(physical line number (1-based), text,
    fields, None)``; ``fields`` is ``None`` for a blank line; ``(line, text, None, failure)``
    (failure row 0) for a record that cannot be read. Quoted fields may span lines (at most
    :data:`MAX_RECORD_LINES`); an unclosed quote fails its own line only and reading goes
    on from the next line."""
    source = _bounded_lines(fh, path, 0)
    pending: list[tuple[str, int]] = []  # lines read ahead and given back

    def take():
        return pending.pop(0) if pending else next(source, None)

    lineno = 0
    header_seen = False
    while True:
        item = take()
        if item is None:
            return
        lineno += 1
        text, overflow = item
        if not header_seen:
            header_seen = bool(text.strip() or overflow)
            continue
        if overflow:
            yield lineno, text, None, _too_long(0, text, overflow)
            continue
        if not text.strip():
            yield lineno, text, None, None
            continue
        if '"' in text and _open_quote(text, delimiter):
            group, closed = [item], False
            while len(group) < MAX_RECORD_LINES:
                more = take()
                if more is None:
                    break
                group.append(more)
                if more[1]:
                    break
                if not _open_quote("\n".join(t for t, _ in group), delimiter):
                    closed = True
                    break
            if not closed:
                pending[:0] = group[1:]
                yield lineno, text, None, Failure(0, clip(text), "unclosed quote in this line")
                continue
            start = lineno
            lineno += len(group) - 1
            text = "\n".join(t for t, _ in group)
            yield start, text, next(csv.reader([text], delimiter=delimiter), []), None
            continue
        yield lineno, text, next(csv.reader([text], delimiter=delimiter), []), None


def _iter_table(path: Path, info: ReadInfo, props: dict[int, str],
                chunk_size: int) -> Iterator[Chunk]:
    names = info.columns
    ncols = len(names)
    sidx = names.index(info.smiles_column)
    iidx = names.index(info.id_column) if info.id_column is not None else None
    decimal = info.delimiter != ","
    start, row = 0, -1

    def reset():
        return [], [], [], [], {name: [] for name in props.values()}, [], 0

    rows, ids, inputs, smiles, values, failures, skipped = reset()

    def flush(end: int) -> Chunk:
        frame = _props_frame(values, decimal) if values else None
        return Chunk(_records(rows, ids, inputs, smiles, frame), failures, start, end,
                     skipped, info)

    with _open_text(path, info.gzipped) as fh:
        records = _table_records(fh, path, info.delimiter)
        for row, (line, text, fields, failure) in enumerate(records):
            if failure is not None:
                failures.append(Failure(row, failure.input, failure.reason))
            elif fields is None:
                skipped += 1
            elif len(fields) > ncols:
                failures.append(Failure(row, clip(text), f"malformed line {line}: expected "
                                        f"{ncols} fields, saw {len(fields)}"))
            else:
                fields += [""] * (ncols - len(fields))
                smi, failure = _standardize(row, fields[sidx])
                if failure is not None:
                    failures.append(failure)
                else:
                    rows.append(row)
                    ids.append(_clean_id(fields[iidx] if iidx is not None else None, row))
                    inputs.append(fields[sidx].strip())
                    smiles.append(smi)
                    for i, name in props.items():
                        values[name].append(fields[i])
            if row + 1 - start >= chunk_size:
                yield flush(row + 1)
                start = row + 1
                rows, ids, inputs, smiles, values, failures, skipped = reset()
    if row + 1 > start or start == 0:
        yield flush(row + 1)


# --------------------------------------------------------------------------- SDF


def _sdf_texts(fh, path: Path) -> Iterator[tuple[str, str | None]]:
    """``(record text, None)`` per ``$$$$``-terminated record, or ``(first line, reason)``
    for a record too long to read; a last record without ``$$$$`` counts if not blank."""
    buf: list[str] = []
    size, bad, title = 0, None, None
    for line, overflow in _bounded_lines(fh, path, 0):
        if not overflow and line.rstrip() == "$$$$":
            yield ("\n".join(buf), None) if bad is None else (title, bad)
            buf, size, bad, title = [], 0, None, None
            continue
        if title is None:
            title = line[:MAX_ECHO_CHARS]
        if bad is not None:
            continue
        if overflow:
            bad = f"SDF line longer than {MAX_LINE_CHARS} characters ({overflow}); not read"
        elif size + len(line) > MAX_SDF_RECORD_CHARS:
            bad = f"SDF record longer than {MAX_SDF_RECORD_CHARS} characters; not read"
        else:
            buf.append(line)
            size += len(line) + 1
    if bad is not None:
        yield title, bad
    elif any(line.strip() for line in buf):
        yield "\n".join(buf), None


def _parse_sdf(text: str) -> Chem.Mol | None:
    supplier = Chem.SDMolSupplier()
    try:
        supplier.SetData(text + "\n$$$$\n", sanitize=False, removeHs=False)
        return supplier[0]
    except Exception:  # noqa: BLE001 - RDKit raises several types for a bad record
        return None


def _iter_sdf(path: Path, info: ReadInfo, chunk_size: int) -> Iterator[Chunk]:
    rows, ids, inputs, smiles, props, failures = [], [], [], [], [], []
    start, row = 0, -1
    with _open_text(path, info.gzipped) as fh:
        for row, (text, bad) in enumerate(_sdf_texts(fh, path)):
            if bad is not None:
                record = Failure(row, clip(text or ""), bad)
            else:
                with BlockLogs():
                    record = _sdf_record(_parse_sdf(text), row, info, text)
            if isinstance(record, Failure):
                failures.append(record)
            else:
                ident, text_in, smi, fields = record
                rows.append(row)
                ids.append(ident)
                inputs.append(text_in)
                smiles.append(smi)
                props.append(fields)
            if row + 1 - start >= chunk_size:
                yield Chunk(_sdf_frame(rows, ids, inputs, smiles, props), failures, start,
                            row + 1, 0, info)
                rows, ids, inputs, smiles, props, failures = [], [], [], [], [], []
                start = row + 1
    if row + 1 > start or start == 0:
        yield Chunk(_sdf_frame(rows, ids, inputs, smiles, props), failures, start, row + 1,
                    0, info)


def _sdf_fields(mol: Chem.Mol, info: ReadInfo) -> dict[str, str]:
    raw = list(mol.GetPropNames())
    names, renamed = _clean_names(raw)
    final, clash = _property_names(names, set())
    info.renamed.update(renamed)
    info.renamed.update(clash)
    return {final[i]: mol.GetProp(r) for i, r in enumerate(raw)}


def _sdf_record(mol: Chem.Mol | None, row: int, info: ReadInfo, text: str):
    """(id, input SMILES, standardised SMILES, data fields) or a Failure."""
    first = text.split("\n", 1)[0].strip()
    if mol is None:
        return Failure(row, clip(first), "unreadable SDF record")
    title = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    id_col = info.id_column
    ident = mol.GetProp(id_col) if id_col and mol.HasProp(id_col) else ("" if id_col else title)
    label = clip(title or ident)
    if mol.GetNumAtoms() == 0:
        return Failure(row, label, "SDF record has no atoms")
    fields = _sdf_fields(mol, info)
    try:
        Chem.SanitizeMol(mol)
        mol = Chem.RemoveHs(mol)
    except Exception as exc:  # RDKit raises several sanitisation exception types
        return Failure(row, label, f"invalid molecule: {str(exc).strip() or type(exc).__name__}")
    try:
        text_in = Chem.MolToSmiles(mol)
        smi = Chem.MolToSmiles(standardize_mol(mol))
    except InputError as exc:
        return Failure(row, label, str(exc))
    except Exception as exc:  # noqa: BLE001 - any RDKit error becomes this record's reason
        return Failure(row, label, f"cannot write SMILES: {exc}")
    return _clean_id(ident, row), text_in, smi, fields


def _sdf_frame(rows, ids, inputs, smiles, props: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(props) if props else pd.DataFrame(index=range(0))
    for col in table.columns:
        converted = pd.to_numeric(table[col], errors="coerce")
        if converted.notna().sum() == table[col].notna().sum():
            table[col] = converted
    return _records(rows, ids, inputs, smiles, table)
