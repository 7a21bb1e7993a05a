"""Regression tests for the store/search defects of issue 11 (each failed before its fix)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from rdkit import Chem

from mmsa.cli import main
from mmsa.library import build_library, delete_library, list_libraries, open_library
from mmsa.types import InputError, LibraryError

# ---------------------------------------------------------------- 1: substructure screen

# non-element primitive before the element in an AND: RDKit's pattern-fingerprint screen
# gave false negatives for all of these
SMARTS_FORMS = ["[D4;#6]", "[D3;#6](=O)N", "[H1;#6]", "[R;#6]", "[a;#7]", "[X4;#6]",
                "[D2;#8]", "[!R;#6]=O", "[H0;#7]", "[X3;#7]~[#6]", "[D1;#8]-[#6]"]


@pytest.mark.parametrize("smarts", SMARTS_FORMS)
def test_substructure_smarts_forms_match_brute_force(lib_small, smarts):
    patt = Chem.MolFromSmarts(smarts)
    expected = [i for i, s in enumerate(lib_small.metadata["smiles"])
                if Chem.MolFromSmiles(s).HasSubstructMatch(patt)]
    assert expected, "fixture must contain matches"
    hits = lib_small.search(smarts, k=None, mode="substructure")
    assert sorted(hits["row"].tolist()) == expected


@pytest.fixture(scope="module")
def lib_small(built):
    root, _ = built
    return open_library("tiny", root=root)


# ---------------------------------------------------------------- 2: symlinks


def test_delete_through_symlink_keeps_the_target(lib_copy):
    root, name = lib_copy
    (root / "alias").symlink_to(root / name, target_is_directory=True)
    with pytest.raises(LibraryError, match="symbolic link"):
        delete_library("alias", root=root)
    assert (root / name / "manifest.json").is_file()
    assert len(open_library(name, root=root)) == 70
    assert [i.name for i in list_libraries(root)] == [name]  # the link is not listed
    with pytest.raises(LibraryError, match="symbolic link"):
        open_library("alias", root=root)


def test_symlinked_file_inside_a_library_is_refused(lib_copy, tmp_path):
    root, name = lib_copy
    elsewhere = tmp_path / "morgan-elsewhere.u8"
    shutil.move(root / name / "morgan.u8", elsewhere)
    (root / name / "morgan.u8").symlink_to(elsewhere)
    with pytest.raises(LibraryError, match="morgan.u8"):
        open_library(name, root=root).search("CCO", mode="tanimoto")


# ---------------------------------------------------------------- 3: corruption


def _flip(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fname,mode", [
    ("morgan.u8", "tanimoto"), ("pattern.u8", "substructure"), ("index.faiss", "embedding"),
    ("metadata.parquet", "exact"), ("vectors.f32", "embedding"),
])
def test_corruption_is_never_a_silent_answer(lib_copy, tiny_checkpoint, capsys, fname, mode):
    """`mmsa search` opens with verify="size" (no hashing at open): the checksum must still be
    checked before the file's content is used."""
    root, name = lib_copy
    lib = open_library(name, root=root)
    query = lib.metadata["smiles"][3]
    _flip(root / name / fname)
    args = ["search", name, "--smiles", query, "--mode", mode, "--indexes", str(root),
            "--checkpoint", str(tiny_checkpoint), "--format", "csv"]
    if fname == "vectors.f32":  # the index does not read the vectors: neighbours do
        lib2 = open_library(name, root=root, verify="size")
        with pytest.raises(LibraryError, match="vectors.f32"):
            lib2.neighbors(3)
        return
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and fname in err and "Traceback" not in err


def test_auto_verify_of_a_large_library_hashes_on_first_use(lib_copy, monkeypatch):
    from mmsa.library import library as L

    root, name = lib_copy
    monkeypatch.setattr(L, "AUTO_HASH_BYTES", 0)  # pretend the library is huge
    _flip(root / name / "morgan.u8")
    lib = open_library(name, root=root)  # sizes only at open
    with pytest.raises(LibraryError, match="morgan.u8 does not match"):
        lib.search("CCO", mode="tanimoto")


# ---------------------------------------------------------------- 5: snapshots


def test_open_library_is_a_snapshot_across_a_rebuild(lib_copy, extra_csv, tiny_checkpoint,
                                                    encoder):
    root, name = lib_copy
    lib = open_library(name, root=root, encoder=encoder)
    build_library(extra_csv, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    assert len(open_library(name, root=root)) == 30
    # the old object still answers from the version it opened, whole
    assert len(lib) == 70 and len(lib.metadata) == 70
    smi = lib.metadata["smiles"][12]
    top = lib.search(smi, k=1, mode="tanimoto")
    assert top["row"][0] == 12 and top["smiles"][0] == smi and top["score"][0] == 1.0
    assert 12 in lib.search(smi, mode="exact")["row"].tolist()
    emb = lib.search(smi, k=1)
    assert emb["smiles"][0] == smi and emb["score"][0] == pytest.approx(1.0, abs=1e-5)
    assert len(lib.failures) == 2
    # derived caches of the old version never land in the new version's folder
    assert lib.cache_dir != root / name / "cache"


# ---------------------------------------------------------------- 6: the swap


def test_kill_between_the_two_renames_loses_nothing(lib_copy, tiny_csv, extra_csv,
                                                    tiny_checkpoint):
    """State after a kill between `rename(final, old)` and `rename(tmp, final)`: the final
    name is gone, the old version and the complete new one lie in hidden folders."""
    root, name = lib_copy
    new_root = root.parent / "other"
    build_library(extra_csv, name, root=new_root, encoder=tiny_checkpoint)
    os.rename(root / name, root / f".{name}.old-0123abcd")
    shutil.move(new_root / name, root / f".{name}.tmp-4567cdef")
    # the next build of that name fails on its input; neither version may be lost
    bad = root.parent / "bad.csv"
    bad.write_text("smiles,id\nnot_smiles,a\n")
    with pytest.raises(InputError):
        build_library(bad, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    lib = open_library(name, root=root, verify="full")
    assert len(lib) == 30  # the finished new version (its manifest was complete)
    assert not list(root.glob(f".{name}.*-*"))


def test_open_recovers_an_interrupted_swap(lib_copy):
    root, name = lib_copy
    os.rename(root / name, root / f".{name}.old-0123abcd")
    assert len(open_library(name, root=root)) == 70
    assert (root / name).is_dir()


def test_build_does_not_touch_temp_folders_of_other_names(lib_copy, tiny_csv, tiny_checkpoint):
    root, name = lib_copy
    other = root / f".{name}.tmp-x.tmp-89abcdef"  # a build of library "tiny.tmp-x" in flight
    other.mkdir()
    (other / "vectors.f32").write_bytes(b"\0" * 16)
    (root / f".{name}.tmp-x.lock").write_text(str(os.getpid()))
    build_library(tiny_csv, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    assert other.is_dir()


# ---------------------------------------------------------------- 8: limits


def test_cli_limits_give_messages_not_tracebacks(built, tmp_path, tiny_csv, tiny_checkpoint,
                                                 capsys):
    root, _ = built
    s = ["search", "tiny", "--smiles", "CCO", "--indexes", str(root)]
    for extra in (["-k", "1000000000000"], ["-k", "1000000000000", "--mode", "tanimoto"],
                  ["-k", "0"]):
        assert main(s + extra + ["--checkpoint", str(tiny_checkpoint)]) == 2
        assert "error: k" in capsys.readouterr().err
    b = ["index", "build", str(tiny_csv), "--name", "x", "--indexes", str(tmp_path / "i"),
         "--checkpoint", str(tiny_checkpoint), "--no-progress"]
    for extra, word in ((["--hyperedge-k", "1000000000"], "hyperedge"),
                        (["--chunk-size", "0"], "chunk"), (["--n-jobs", "0"], "n-jobs")):
        assert main(b + extra) == 2
        assert word in capsys.readouterr().err
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert main(["index", "list", "--indexes", str(afile)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_huge_query_is_refused_quickly(lib_small):
    t0 = time.perf_counter()
    for mode in ("substructure", "tanimoto", "exact"):
        with pytest.raises(InputError, match="atoms|characters"):
            lib_small.search("C" * 10_000, mode=mode)
    with pytest.raises(InputError, match="characters"):
        lib_small.search("C" * 2_000_000, mode="substructure")
    assert time.perf_counter() - t0 < 5


def test_substructure_time_limit(lib_small, monkeypatch):
    from mmsa import limits

    monkeypatch.setattr(limits, "QUERY_SECONDS", 0.0)
    with pytest.raises(InputError, match="seconds"):
        lib_small.search("[#6]~[#6]", k=None, mode="substructure")


def test_disk_full_during_build(lib_copy, extra_csv, tiny_checkpoint, monkeypatch):
    from mmsa.library import ann

    root, name = lib_copy
    before = {p.name: p.read_bytes() for p in (root / name).iterdir() if p.is_file()}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ann, "write_index", full)
    with pytest.raises(LibraryError, match="space"):
        build_library(extra_csv, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    after = {p.name: p.read_bytes() for p in (root / name).iterdir() if p.is_file()}
    assert after == before and sorted(p.name for p in root.iterdir()) == [name]


@pytest.mark.parametrize("edit", [
    lambda m: m.__setitem__("count", "seventy"),
    lambda m: m["files"]["vectors.f32"].__setitem__("shape", [-70, 1]),
    lambda m: m["files"]["vectors.f32"].__setitem__("shape", "70x16"),
    lambda m: m["embedding"].__setitem__("dim", None),
    lambda m: m.__setitem__("files", []),
    lambda m: m["files"].__setitem__("../victim/x.f32", {"size": 1, "sha256": "0"}),
    lambda m: m["files"]["vectors.f32"].__setitem__("dtype", "object"),
    lambda m: m.__setitem__("index", "flat"),
])
def test_malformed_manifest_values(lib_copy, built, edit, capsys):
    root, name = lib_copy
    shutil.copytree(built[0] / "tiny", root / "good")
    mpath = root / name / "manifest.json"
    m = json.loads(mpath.read_text())
    edit(m)
    mpath.write_text(json.dumps(m))
    with pytest.raises(LibraryError):
        open_library(name, root=root)
    infos = {i.name: i for i in list_libraries(root)}  # one bad manifest breaks nothing else
    assert infos["good"].ok and not infos[name].ok
    assert main(["index", "list", "--indexes", str(root)]) == 0
    assert "good" in capsys.readouterr().out


def test_huge_failed_field_is_truncated_in_the_manifest(tmp_path, tiny_checkpoint):
    src = tmp_path / "big.csv"
    src.write_text("smiles,id\nCCO,a\n" + "X" * 300_000 + ",b\n")
    build_library(src, "big", root=tmp_path / "i", encoder=tiny_checkpoint)
    assert (tmp_path / "i" / "big" / "manifest.json").stat().st_size < 20_000
    lib = open_library("big", root=tmp_path / "i")
    assert len(lib.failures) == 1 and len(lib.failures[0].input) < 2_000


def test_control_characters_are_not_printed(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "ansi.csv"
    src.write_text("smiles,id,\x1b[31mred\x1b[0m\nCCO,a,1\nCCN,b,2\n")
    root = str(tmp_path / "i")
    assert main(["index", "build", str(src), "--name", "ansi", "--indexes", root,
                 "--checkpoint", str(tiny_checkpoint), "--no-progress"]) == 0
    assert main(["index", "info", "ansi", "--indexes", root]) == 0
    assert main(["search", "ansi", "--smiles", "CCO", "--mode", "tanimoto",
                 "--indexes", root]) == 0
    out = capsys.readouterr()
    assert "\x1b" not in out.out and "\x1b" not in out.err


# ---------------------------------------------------------------- 10: exact mode help


def test_exact_mode_help_says_what_it_matches(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "stereo" in out and "tautomer" in out


# ---------------------------------------------------------------- 7: orphan workers


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_parallel_build_leaves_no_workers(tmp_path, molecules_csv, tiny_checkpoint):
    big = tmp_path / "many.csv"
    rows = molecules_csv.read_text().splitlines()
    big.write_text("\n".join([rows[0]] + rows[1:] * 40) + "\n")  # 4,000 rows, 16 per chunk
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmsa", "index", "build", str(big), "--name", "par",
         "--indexes", str(tmp_path / "i"), "--checkpoint", str(tiny_checkpoint),
         "--n-jobs", "2", "--chunk-size", "16", "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        kids: list[int] = []
        while time.time() < deadline:
            kids = _children(proc.pid)
            if len(kids) >= 3 and not any((tmp_path / "i").glob("par")):
                break  # resource tracker + 2 workers
            time.sleep(0.3)
        assert len(kids) >= 3, "workers never started"
        time.sleep(2)
        proc.kill()
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.3)
        assert not [k for k in kids if _alive(k)]
    finally:
        for k in _children(proc.pid):
            os.kill(k, 9)
        if proc.poll() is None:
            proc.kill()


# ---------------------------------------------------------------- one fingerprint module


def test_stored_pattern_fingerprints_are_chem_fingerprints(lib_small):
    from rdkit import DataStructs

    from mmsa.chem.fingerprints import pattern_fingerprint, unpack_bits

    smi = lib_small.metadata["smiles"][7]
    mol = Chem.MolFromSmiles(smi)
    assert np.array_equal(np.asarray(lib_small.pattern[7]), pattern_fingerprint(mol))
    bits = np.zeros(2048, np.uint8)  # RDKit's own bit numbering, packed big-endian
    DataStructs.ConvertToNumpyArray(Chem.PatternFingerprint(mol, fpSize=2048), bits)
    assert np.array_equal(unpack_bits(pattern_fingerprint(mol)), bits.astype(bool))
    assert lib_small.manifest["fingerprints"]["pattern"]["packing"] == "np.packbits, big-endian"


def test_libraries_with_the_old_pattern_bit_order_still_search_right(lib_copy):
    """Libraries built before the unification stored RDKit's FPS-text byte order."""
    from mmsa.chem.fingerprints import PATTERN_PACKING, PATTERN_PACKING_FPS, repack_pattern
    from mmsa.hashing import sha256_file

    root, name = lib_copy
    path = root / name / "pattern.u8"
    new = np.fromfile(path, np.uint8)
    repack_pattern(new, PATTERN_PACKING_FPS).tofile(path)
    mpath = root / name / "manifest.json"
    m = json.loads(mpath.read_text())
    m["fingerprints"]["pattern"]["packing"] = PATTERN_PACKING_FPS
    m["files"]["pattern.u8"]["sha256"] = sha256_file(path)
    mpath.write_text(json.dumps(m))
    lib = open_library(name, root=root, verify="full")
    assert lib.pattern_packing == PATTERN_PACKING_FPS != PATTERN_PACKING
    for q in ("c1ccccc1", "[D3;#6](=O)N", "C(=O)O", "[#7]"):
        patt = Chem.MolFromSmarts(q) if "[" in q else Chem.MolFromSmiles(q)
        expected = [i for i, s in enumerate(lib.metadata["smiles"])
                    if Chem.MolFromSmiles(s).HasSubstructMatch(patt)]
        assert sorted(lib.search(q, k=None, mode="substructure")["row"]) == expected, q
