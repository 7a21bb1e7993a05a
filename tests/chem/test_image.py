import pickle

import numpy as np
import pytest
from rdkit import Chem

from mmsa.chem.image import ImageFeaturizer
from mmsa.types import InputError


@pytest.mark.parametrize("size", [32, 64, 96])
def test_shape_dtype_and_ink(size, smiles_100):
    f = ImageFeaturizer(size=size)
    assert f.shape == (3, size, size) and f.config()["size"] == size
    for smi in smiles_100[:10]:
        im = f(smi)
        assert im.shape == f.shape and im.dtype == np.uint8
        assert 0 < (im.max(0) > 0).mean() < 0.5  # some ink, mostly background
        # nothing touches the border (margin)
        assert im[:, 0].max() == im[:, -1].max() == im[:, :, 0].max() == im[:, :, -1].max() == 0


def test_deterministic_bytes(smiles_100):
    a, b = ImageFeaturizer(), ImageFeaturizer()
    for smi in smiles_100[:10]:
        assert a(smi).tobytes() == b(smi).tobytes()


def test_same_molecule_same_picture_whatever_the_smiles():
    f = ImageFeaturizer()
    rng = np.random.default_rng(0)
    for smi in ["CC(=O)Nc1ccc(O)cc1", "O=C(O)c1ccccc1OC(C)=O", "C[C@H](N)C(=O)O"]:
        mol = Chem.MolFromSmiles(smi)
        perm = rng.permutation(mol.GetNumAtoms()).tolist()
        other = Chem.MolToSmiles(Chem.RenumberAtoms(mol, perm), canonical=False)
        assert other != smi
        assert np.array_equal(f(smi), f(other))


def test_different_molecules_differ():
    f = ImageFeaturizer()
    assert not np.array_equal(f("c1ccccc1O"), f("c1ccccc1N"))  # colour of the heteroatom
    assert not np.array_equal(f("CCCC"), f("CC=CC"))  # a double bond adds a line


def test_colours_follow_rdkit_palette():
    im = ImageFeaturizer(size=64)("O=C=O").astype(int)
    red = (im[0] > 200) & (im[1] < 60) & (im[2] < 60)
    assert red.sum() >= 4  # two oxygen discs
    im = ImageFeaturizer(size=64)("CCN").astype(int)
    blue = (im[2] > 200) & (im[0] < 100)
    assert blue.sum() >= 2


def test_single_atom_is_visible():
    im = ImageFeaturizer(size=32)("C")
    assert im.max() == 255 and (im.max(0) > 0).sum() >= 4


def test_invalid_and_bad_arguments():
    with pytest.raises(InputError):
        ImageFeaturizer()("C1CC")
    with pytest.raises(ValueError):
        ImageFeaturizer(size=8)


def test_picklable():
    f = ImageFeaturizer(size=48)
    clone = pickle.loads(pickle.dumps(f))  # noqa: S301 (our own bytes: the worker-pool path)
    assert clone.config() == f.config() and np.array_equal(clone("CCO"), f("CCO"))
