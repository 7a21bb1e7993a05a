"""Every search mode against brute force on 1,500 real molecules (RDKit's NCI sample).

Substructure mode is checked over a few hundred SMARTS: hand-written forms and SMARTS
generated from random fragments of library molecules with random primitive orders.
"""

from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest
from rdkit import Chem, DataStructs, RDConfig
from rdkit.Chem import rdFingerprintGenerator

from mmsa.library import build_library, open_library

N_MOLECULES = 1500


@pytest.fixture(scope="module")
def nci(tmp_path_factory, tiny_checkpoint):
    """A library of the first 1,500 parseable molecules of RDKit's NCI first_5K.smi."""
    src = os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    rows = []
    with open(src) as fh:
        for line in fh:
            smi = line.split()[0]
            if Chem.MolFromSmiles(smi) is not None:
                rows.append(smi)
            if len(rows) == N_MOLECULES:
                break
    tmp = tmp_path_factory.mktemp("nci")
    path = tmp / "nci.smi"
    path.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(rows)))
    build_library(path, "nci", root=tmp / "idx", encoder=tiny_checkpoint, hyperedge_k=4,
                  chunk_size=512)
    lib = open_library("nci", root=tmp / "idx", encoder=tiny_checkpoint)
    mols = [Chem.MolFromSmiles(s) for s in lib.metadata["smiles"]]
    return lib, mols


HAND = [
    "[D4;#6]", "[#6;D4]", "[D3;#6](=O)N", "[H1;#6]", "[R;#6]", "[a;#7]", "[X4;#6]",
    "[#6]~[#7]", "[!#6]", "[C,N]=O", "c1ccccc1", "[$(C=O)]", "[!$(C=O);#6]", "[OX2H]",
    "[CX3](=O)[OX2H1]", "[NX3;H2,H1;!$(NC=O)]", "[#6]!@[#6]", "[#6]@[#6]", "[r5]", "[r6;a]",
    "[R2]", "[x3]", "[v4;#6]", "[+1]", "[-1;#8]", "[#7+]", "[Cl,Br,I]", "[F,Cl]c", "*~*~*~*~*",
    "[!#1]", "[#6;!R]=[#6;!R]", "C#N", "[#16]", "[S;D2]", "[n;H1]", "[nH]", "[c;H0;R2]",
    "[C;H3]", "[CH2]", "[#8;H1]-[#6]", "[O;D1]=[C;D3]", "c:c:c:c", "c-c", "[a]!:[a]",
    "[#6]=,:[#7]", "[N;X3;v3]", "[P]", "[#15]", "[B]", "[Si]", "[Na,K]", "[#6&R&!a]",
    "[!a;R]", "[A;R]", "[$([OH]c1ccccc1)]", "[$(*=O)]~[#7]", "O=C-[#7]-[#6]=O",
    "[#6]1~[#6]~[#6]~[#6]~[#6]~1", "[#6]1~[#6]~[#6]~1", "C1CCCCC1", "c1ccncc1", "n1ccccc1",
    "[13C]", "[2H]", "[#6@H]", "[C;!D1;!D2]", "[#7;!H0]", "[#6;X3]=[#8]",
]


def _atom_smarts(atom: Chem.Atom, rng: random.Random) -> str:
    z = atom.GetAtomicNum()
    elem = f"#{z}"
    prims = {
        "D": f"D{atom.GetDegree()}",
        "H": f"H{atom.GetTotalNumHs()}",
        "X": f"X{atom.GetTotalDegree()}",
        "R": "R" if atom.IsInRing() else "!R",
        "a": "a" if atom.GetIsAromatic() else "A",
        "v": f"v{atom.GetTotalValence()}",
        "charge": f"{atom.GetFormalCharge():+d}" if atom.GetFormalCharge() else "+0",
    }
    chosen = rng.sample(sorted(prims), rng.randint(0, 3))
    parts = [prims[c] for c in chosen]
    if rng.random() < 0.15:
        parts.append(f"!#{rng.choice([9, 15, 16, 17, 35])}")
    if rng.random() < 0.8:  # usually name the element, at a random position in the AND
        parts.insert(rng.randint(0, len(parts)), elem)
    if rng.random() < 0.1:  # an OR of elements
        parts = [f"{elem},#{rng.choice([6, 7, 8])}"] + parts
    if not parts:
        return "*"
    sep = rng.choice([";", "&"])
    return "[" + sep.join(parts) + "]"


def _bond_smarts(bond: Chem.Bond, rng: random.Random) -> str:
    options = ["~"]
    bt = bond.GetBondType()
    options.append({Chem.BondType.SINGLE: "-", Chem.BondType.DOUBLE: "=",
                    Chem.BondType.TRIPLE: "#", Chem.BondType.AROMATIC: ":"}.get(bt, "~"))
    options.append("@" if bond.IsInRing() else "!@")
    options.append("")  # SMARTS default: single or aromatic
    return rng.choice(options)


def _write(mol, chosen: set, a: int, parent: int | None, seen: set, rng) -> str:
    seen.add(a)
    text = _atom_smarts(mol.GetAtomWithIdx(a), rng)
    branches = []
    for nb in mol.GetAtomWithIdx(a).GetNeighbors():
        b = nb.GetIdx()
        if b in chosen and b not in seen and b != parent:
            bond = mol.GetBondBetweenAtoms(a, b)
            branches.append(_bond_smarts(bond, rng) + _write(mol, chosen, b, a, seen, rng))
    for br in branches[:-1]:
        text += f"({br})"
    if branches:
        text += branches[-1]
    return text


def generated_smarts(mols, n: int, seed: int = 0) -> list[str]:
    """SMARTS of random connected fragments (1-6 atoms) of library molecules, each atom
    written with random primitives in a random order."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        mol = rng.choice(mols)
        if mol.GetNumAtoms() < 2:
            continue
        start = rng.randrange(mol.GetNumAtoms())
        size = rng.randint(1, 6)
        atoms = [start]
        while len(atoms) < size:
            nbrs = [nb.GetIdx() for a in atoms for nb in mol.GetAtomWithIdx(a).GetNeighbors()
                    if nb.GetIdx() not in atoms]
            if not nbrs:
                break
            atoms.append(rng.choice(nbrs))
        # a tree over the chosen atoms, written depth first
        smarts = _write(mol, set(atoms), atoms[0], None, set(), rng)
        if Chem.MolFromSmarts(smarts) is not None:
            out.append(smarts)
    return out


def _reading(q: str):
    """The documented reading of a substructure query: SMARTS when it uses SMARTS-only
    syntax, else SMILES (parsed as the library parses it), else SMARTS."""
    from mmsa.chem.standardize import parse_smiles
    from mmsa.types import InputError

    if not (any(c in q for c in "~*$!;&,") or re.search(r"\[[^\]]*#", q)):
        try:
            mol = parse_smiles(q)
            if not any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
                return mol
        except InputError:
            pass
    return Chem.MolFromSmarts(q)


def _brute(mols, patt) -> list[int]:
    return [i for i, m in enumerate(mols) if m.HasSubstructMatch(patt)]


def test_substructure_against_brute_force_over_hundreds_of_smarts(nci):
    lib, mols = nci
    queries = HAND + generated_smarts(mols, 260)
    assert len(queries) >= 300
    wrong = []
    nonempty = 0
    for q in queries:
        expected = _brute(mols, _reading(q))
        got = sorted(lib.search(q, k=None, mode="substructure")["row"].tolist())
        nonempty += bool(expected)
        if got != expected:
            wrong.append((q, len(expected), len(got)))
    assert not wrong, f"{len(wrong)} of {len(queries)} SMARTS differ: {wrong[:10]}"
    assert nonempty > len(queries) // 2  # the check is not vacuous


def test_substructure_smiles_queries_against_brute_force(nci):
    lib, mols = nci
    rng = random.Random(1)
    queries = ["c1ccccc1", "C1=CC=CC=C1", "C(=O)O", "CN", "c1ccc2ccccc2c1", "Cl", "C=O",
               "OCC", "c1ccoc1", "N#C", "[N+](=O)[O-]", "S(=O)(=O)N", "c1cc[nH]c1"]
    queries += [Chem.MolToSmiles(rng.choice(mols)) for _ in range(15)]  # whole molecules
    for q in queries:
        expected = _brute(mols, _reading(q))  # queries are not standardised
        got = sorted(lib.search(q, k=None, mode="substructure")["row"].tolist())
        assert got == expected, q
        if len(expected) > 5:  # with k: the k best by Tanimoto among the matches
            top = lib.search(q, k=5, mode="substructure")
            assert set(top["row"]) <= set(expected) and len(top) == 5
            if top["tanimoto"].notna().all():  # a molecule query (radicals read as SMARTS)
                assert top["tanimoto"].is_monotonic_decreasing, q


def _bulk(query_mol, mols) -> np.ndarray:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    q = gen.GetFingerprint(query_mol)
    return np.array(DataStructs.BulkTanimotoSimilarity(q, [gen.GetFingerprint(m) for m in mols]))


def test_tanimoto_against_brute_force(nci):
    lib, mols = nci
    rng = np.random.default_rng(0)
    for r in rng.choice(len(mols), 20, replace=False):
        expected = _bulk(mols[r], mols)
        hits = lib.search(Chem.MolToSmiles(mols[r]), k=10, mode="tanimoto")
        np.testing.assert_allclose(hits["score"], np.sort(expected)[::-1][:10], atol=1e-6)
        np.testing.assert_allclose(hits["score"], expected[hits["row"]], atol=1e-6)
        thr = lib.search(Chem.MolToSmiles(mols[r]), k=None, mode="tanimoto", threshold=0.4)
        assert sorted(thr["row"]) == sorted(np.flatnonzero(expected >= 0.4 - 1e-7))


def test_exact_against_brute_force(nci):
    lib, mols = nci
    smiles = lib.metadata["smiles"].tolist()
    rng = np.random.default_rng(1)
    for r in rng.choice(len(mols), 30, replace=False):
        q = Chem.MolToSmiles(mols[r], doRandom=True)
        expected = [i for i, s in enumerate(smiles) if s == smiles[r]]
        assert lib.search(q, mode="exact")["row"].tolist() == expected


def test_embedding_against_brute_force(nci, encoder):
    lib, _ = nci
    vectors = np.asarray(lib.vectors)
    rng = np.random.default_rng(2)
    for r in rng.choice(len(vectors), 20, replace=False):
        smi = lib.metadata["smiles"][r]
        q = encoder.embed([smi]).vectors[0]
        sims = vectors @ q
        hits = lib.search(smi, k=10)
        np.testing.assert_allclose(hits["score"], np.sort(sims)[::-1][:10], atol=1e-5)
        nb = lib.neighbors(int(r), k=5)
        own = np.delete(vectors @ vectors[r], r)
        np.testing.assert_allclose(nb["score"], np.sort(own)[::-1][:5], atol=1e-5)
