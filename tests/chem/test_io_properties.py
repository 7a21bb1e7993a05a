"""Property-based tests of the readers (issue 11): whatever the input, every input row ends as
exactly one stored molecule, one failure, or (blank/comment/header lines only) one skipped
row, in input order, and chunks tile the rows without gaps."""

import csv
import gzip
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem

from mmsa.chem.io import iter_library
from mmsa.chem.standardize import standardize_smiles
from mmsa.types import InputError

VALID = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "C1CCCCC1", "O=C(O)c1ccccc1", "CC(C)Cl"]
INVALID = ["C1CC", "xyz", "C(C)(C)(C)(C)C", ""]
FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _read(path, chunk_size, **kw):
    """(chunks, None) or (None, InputError)."""
    try:
        return list(iter_library(path, chunk_size=chunk_size, **kw)), None
    except InputError as exc:
        return None, exc


def _partition(chunks) -> tuple[dict[int, object], dict[int, object], int]:
    """Check the row contract on a chunk list; return (molecule rows, failure rows, end)."""
    mols, fails, end = {}, {}, 0
    for c in chunks:
        assert c.start_row == end, "chunks must tile the rows"
        rec_rows = c.records["row"].tolist()
        fail_rows = [f.row for f in c.failures]
        assert rec_rows == sorted(rec_rows) and fail_rows == sorted(fail_rows), "input order"
        assert not set(rec_rows) & set(fail_rows), "a row both stored and failed"
        assert len(set(rec_rows)) == len(rec_rows) and len(set(fail_rows)) == len(fail_rows)
        assert all(c.start_row <= r < c.end_row for r in rec_rows + fail_rows)
        assert len(rec_rows) + len(fail_rows) + c.skipped == c.end_row - c.start_row, \
            "a row neither stored, failed nor skipped"
        mols.update({r: rec for r, rec in zip(rec_rows, c.records.itertuples(index=False))})
        fails.update({f.row: f for f in c.failures})
        end = c.end_row
    return mols, fails, end


# ---------------------------------------------------------------- random bytes


@FAST
@given(data=st.binary(max_size=600), ext=st.sampled_from([".csv", ".tsv", ".smi", ".sdf",
                                                          ".csv.gz", ".sdf.gz"]),
       chunk_size=st.integers(1, 4))
def test_random_bytes_give_records_and_failures_or_a_clear_error(tmp_path, data, ext,
                                                                  chunk_size):
    path = tmp_path / f"x{ext}"
    path.write_bytes(data)
    chunks, err = _read(path, chunk_size)
    if err is not None:
        assert str(path.name) in str(err) and "\x1b" not in str(err)
        return
    _partition(chunks)


@FAST
@given(lines=st.lists(st.one_of(st.sampled_from(VALID + INVALID + ["# note", "", "  "]),
                                st.text(max_size=30)), min_size=1, max_size=25),
       chunk_size=st.integers(1, 5), gz=st.booleans())
def test_smi_lines_each_end_once(tmp_path, lines, chunk_size, gz):
    lines = [line.replace("\r", " ").replace("\n", " ").replace("\x0b", " ")
             .replace("\x0c", " ").replace("\x1c", " ").replace("\x1d", " ")
             .replace("\x1e", " ").replace("\x85", " ").replace("\u2028", " ")
             .replace("\u2029", " ") for line in lines]
    text = "\n".join(lines) + "\n"
    path = tmp_path / ("x.smi.gz" if gz else "x.smi")
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    chunks, err = _read(path, chunk_size)
    if err is not None:
        return  # empty or no valid molecule: raised, nothing stored
    mols, fails, end = _partition(chunks)
    assert end == len(lines)
    for row in set(mols) | set(fails):
        assert lines[row].strip() and not lines[row].strip().startswith("#")


# ---------------------------------------------------------------- random CSV dialects


ID_TEXT = st.text(alphabet="abcxyz0123 ,;|\t\"'\n", max_size=8)


@FAST
@given(rows=st.lists(st.tuples(st.sampled_from(VALID + INVALID), ID_TEXT,
                               st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 3)),
                               st.booleans()),
                     min_size=1, max_size=20),
       delimiter=st.sampled_from([",", ";", "\t", "|"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       terminator=st.sampled_from(["\n", "\r\n"]),
       named=st.booleans(), order=st.permutations([0, 1, 2]),
       decimal_comma=st.booleans(), ext=st.sampled_from([".csv", ".tsv", ".csv.gz"]),
       chunk_size=st.integers(1, 6))
def test_csv_dialects_each_row_ends_once(tmp_path, rows, delimiter, quoting, terminator,
                                         named, order, decimal_comma, ext, chunk_size):
    decimal_comma = decimal_comma and delimiter != ","
    header = ["smiles", "id", "value"] if named else ["s", "name", "v"]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator=terminator)
    writer.writerow([header[i] for i in order])
    expected = []  # per data row: None (blank line) or (smiles, id, value)
    for smi, ident, value, blank_before in rows:
        if blank_before:
            buf.write(terminator)
            expected.append(None)
        text = f"{value}".replace(".", ",") if decimal_comma else f"{value}"
        writer.writerow([[smi, ident, text][i] for i in order])
        expected.append((smi, ident, value))
    path = tmp_path / f"x{ext}"
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data) if ext.endswith(".gz") else data)

    chunks, err = _read(path, chunk_size)
    valid = [e for e in expected if e is not None and e[0] in VALID]
    if err is not None:
        # only allowed when nothing is valid, or the SMILES column cannot be told by content
        assert not valid or not named, err
        return
    mols, fails, end = _partition(chunks)
    assert end == len(expected)
    info = chunks[0].info
    assert info.delimiter == delimiter
    assert info.smiles_column == header[0]
    for row, exp in enumerate(expected):
        if exp is None:
            assert row not in mols and row not in fails
            continue
        smi, ident, value = exp
        if smi in VALID:
            rec = mols[row]
            assert rec.smiles == standardize_smiles(smi)
            assert rec.id == (ident.strip() or str(row))
            assert abs(getattr(rec, header[2]) - value) < 1e-9
        else:
            assert row in fails and fails[row].input == smi


# ---------------------------------------------------------------- random SDF damage


def _block(smiles: str, title: str) -> list[str]:
    mol = Chem.MolFromSmiles(smiles)
    mol.SetProp("_Name", title)
    return Chem.MolToMolBlock(mol).rstrip("\n").split("\n") + ["> <n>", title, ""]


DAMAGE = st.sampled_from(["none", "none", "junk", "drop_line", "truncate", "empty",
                          "garble_counts"])


@FAST
@given(records=st.lists(st.tuples(st.sampled_from(VALID), DAMAGE, st.integers(0, 40),
                                  st.text(alphabet="abc $\n<>M", max_size=20)),
                        min_size=1, max_size=8),
       chunk_size=st.integers(1, 4), gz=st.booleans(), final_terminator=st.booleans())
def test_sdf_damage_fails_only_the_damaged_record(tmp_path, records, chunk_size, gz,
                                                 final_terminator):
    out, damaged = [], []
    for i, (smi, damage, k, junk) in enumerate(records):
        lines = _block(smi, f"m{i}")
        if damage == "junk":
            lines = [line for line in junk.split("\n") if line.strip() != "$$$$"]
        elif damage == "drop_line":
            del lines[k % len(lines)]
        elif damage == "truncate":
            lines = lines[:k % len(lines)]
        elif damage == "empty":
            lines = []
        elif damage == "garble_counts":
            lines[3] = "xx" + lines[3][2:]
        damaged.append(damage != "none")
        out.extend(lines)
        out.append("$$$$")
    if not final_terminator:
        out.pop()  # the last record unterminated: still a record, unless blank
    last_blank = not final_terminator and not any(line.strip() for line in lines)
    text = "\n".join(out) + "\n"
    path = tmp_path / ("x.sdf.gz" if gz else "x.sdf")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())

    chunks, err = _read(path, chunk_size)
    if err is not None:
        assert all(damaged), err
        return
    mols, fails, end = _partition(chunks)
    n = len(records) - (1 if last_blank else 0)
    assert end == n and set(mols) | set(fails) == set(range(n))
    for i, ((smi, _damage, _k, _junk), bad) in enumerate(zip(records, damaged)):
        if not bad:
            assert i in mols, f"undamaged record {i} lost"
            assert mols[i].id == f"m{i}" and mols[i].smiles == standardize_smiles(smi)


@pytest.mark.parametrize("junk", ["junk", "", "a\nb\nc\nd\ne"])
def test_sdf_damage_example(tmp_path, junk):
    blocks = ["\n".join(_block(s, f"m{i}")) for i, s in enumerate(VALID[:4])]
    path = tmp_path / "x.sdf"
    path.write_text("\n$$$$\n".join([blocks[0], junk, *blocks[1:]]) + "\n$$$$\n")
    chunks, _ = _read(path, 2)
    mols, fails, end = _partition(chunks)
    assert end == 5 and sorted(fails) == [1] and sorted(mols) == [0, 2, 3, 4]
