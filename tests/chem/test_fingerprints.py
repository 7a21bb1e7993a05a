import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from mmsa.chem.fingerprints import (
    morgan_fingerprint,
    morgan_fingerprints,
    pack_bits,
    pattern_fingerprint,
    popcount,
    tanimoto,
    unpack_bits,
)
from mmsa.types import InputError


def _rdkit_fp(smi):
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return gen.GetFingerprint(Chem.MolFromSmiles(smi))


def test_packed_bits_are_rdkits_bits():
    fp = morgan_fingerprint("CC(=O)Nc1ccc(O)cc1")
    assert fp.shape == (256,) and fp.dtype == np.uint8
    on = np.flatnonzero(unpack_bits(fp)).tolist()
    assert on == list(_rdkit_fp("CC(=O)Nc1ccc(O)cc1").GetOnBits())
    i = on[0]
    assert (fp[i // 8] >> (7 - i % 8)) & 1 == 1  # documented bit order


def test_bulk_with_failures(smiles_100):
    smiles = smiles_100[:20] + ["C1CC"]
    fps, ok, failures = morgan_fingerprints(smiles)
    assert fps.shape == (21, 256) and ok.tolist() == [True] * 20 + [False]
    assert [f.row for f in failures] == [20] and not fps[20].any()
    assert np.array_equal(fps[3], morgan_fingerprint(smiles[3]))


def test_tanimoto_matches_rdkit(smiles_100):
    fps, ok, _ = morgan_fingerprints(smiles_100)
    ref = DataStructs.BulkTanimotoSimilarity(_rdkit_fp(smiles_100[0]),
                                             [_rdkit_fp(s) for s in smiles_100])
    ours = tanimoto(fps[0], fps)
    assert ours.shape == (100,) and ours.dtype == np.float32
    assert np.allclose(ours, ref, atol=1e-6) and ours[0] == 1.0
    many = tanimoto(fps[:3], fps, block=7)  # several queries, small blocks
    assert many.shape == (3, 100) and np.allclose(many[0], ours)


def test_tanimoto_edge_cases():
    zero = np.zeros((2, 256), dtype=np.uint8)
    assert tanimoto(zero[0], zero).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        tanimoto(np.zeros(128, np.uint8), zero)
    odd = np.packbits(np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]], bool), axis=1)
    assert tanimoto(odd[0], odd)[0] == 1.0  # widths that are not a multiple of 8 bytes


def test_pack_unpack_popcount_round_trip():
    bits = np.random.default_rng(0).random((5, 64)) > 0.5
    packed = pack_bits(bits)
    assert packed.shape == (5, 8) and np.array_equal(unpack_bits(packed), bits)
    assert popcount(packed).tolist() == bits.sum(1).tolist()
    with pytest.raises(ValueError):
        pack_bits(np.zeros(7, bool))


def test_pattern_fingerprint_screens_substructures():
    core = unpack_bits(pattern_fingerprint("c1ccccc1"))
    mol = unpack_bits(pattern_fingerprint("CC(=O)Nc1ccc(O)cc1"))
    assert core.any() and np.all(mol[core])


def test_invalid():
    with pytest.raises(InputError):
        morgan_fingerprint("C1CC")
