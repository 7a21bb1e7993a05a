import numpy as np
import pytest
from rdkit import Chem

from mmsa.chem.conformer import Conformer, ConformerFailure, ConformerFeaturizer
from mmsa.chem.graph import GraphFeaturizer
from mmsa.types import InputError

# RDKit's ETKDG cannot embed this chromium complex (ETK minimisation fails every attempt)
UNEMBEDDABLE = "N[Cr](N)(SC#N)(SC#N)(SC#N)SC#N"


def test_heavy_atoms_in_graph_order(smiles_100):
    f, g = ConformerFeaturizer(), GraphFeaturizer()
    for smi in smiles_100[:8] + ["C[C@H](N)C(=O)O", "[2H]C([2H])O"]:
        conf = f(smi)
        assert isinstance(conf, Conformer), getattr(conf, "reason", "")
        mol = Chem.MolFromSmiles(smi)
        assert conf.z.dtype == np.int64 and conf.pos.dtype == np.float32
        assert conf.z.tolist() == [a.GetAtomicNum() for a in mol.GetAtoms()]
        assert conf.pos.shape == (g(smi).num_nodes, 3)
        assert np.allclose(conf.pos.mean(0), 0, atol=1e-4)


def test_geometry_is_chemical():
    conf = ConformerFeaturizer()("CC#N")
    d = np.linalg.norm(conf.pos[1] - conf.pos[2])
    assert 1.10 < d < 1.20  # C#N triple bond, Angstrom
    angle = np.degrees(np.arccos(np.dot(conf.pos[0] - conf.pos[1], conf.pos[2] - conf.pos[1])
                                 / np.linalg.norm(conf.pos[0] - conf.pos[1]) / d))
    assert angle > 170  # linear nitrile


def test_seeded_and_deterministic():
    smi = "CC(=O)Nc1ccc(O)cc1"
    a, b = ConformerFeaturizer(seed=1)(smi), ConformerFeaturizer(seed=1)(smi)
    assert a.pos.tobytes() == b.pos.tobytes()
    c = ConformerFeaturizer(seed=2)(smi)
    assert not np.array_equal(a.pos, c.pos)


def test_mmff_relaxes():
    smi = "CCCCO"
    plain, relaxed = ConformerFeaturizer()(smi), ConformerFeaturizer(mmff=True)(smi)
    assert relaxed.pos.shape == plain.pos.shape and not np.array_equal(plain.pos, relaxed.pos)
    assert ConformerFeaturizer(mmff=True).config()["mmff"] is True


def test_failure_has_a_reason():
    out = ConformerFeaturizer(max_attempts=5)(UNEMBEDDABLE)
    assert isinstance(out, ConformerFailure) and not out
    assert "no conformer" in out.reason and "etk_minimization" in out.reason
    assert "random coordinates" in out.reason  # the retry happened too


def test_attempt_bound_is_respected():
    out = ConformerFeaturizer(max_attempts=1, random_coords_retry=False)(UNEMBEDDABLE)
    assert isinstance(out, ConformerFailure) and "within 1 attempts" in out.reason


def test_rdkit_errors_become_failures():
    # an Hg complex on which RDKit's bounds-matrix builder raises an invariant violation
    smi = "O1C2=CC=CC3=CC=C[N+](=C23)[Hg]14OC5=CC=CC6=CC=C[N+]4=C56"
    out = ConformerFeaturizer()(smi)
    assert isinstance(out, ConformerFailure) and "RDKit error" in out.reason


def test_invalid_smiles_and_arguments():
    with pytest.raises(InputError):
        ConformerFeaturizer()("C1CC")
    with pytest.raises(ValueError):
        ConformerFeaturizer(max_attempts=0)
