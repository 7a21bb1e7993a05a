"""The featurisation benchmark's measuring functions, on the tiny fixture (not MOSES)."""

import importlib.util
import json
from pathlib import Path

import pytest

from mmsa.chem.graph import GraphFeaturizer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "featurize.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("featurize_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_featurizer_reports_rates(bench, smiles_100):
    res = bench.bench_featurizer("graph", GraphFeaturizer(), smiles_100 + ["C1CC"], n_jobs=1)
    assert res["molecules"] == 101 and res["failures"] == 1
    assert res["mol_per_s"] > 0 and res["mol_per_cpu_s_single_process"] > 0
    assert res["target_mol_per_s"] == 5000 and isinstance(res["meets_target"], bool)
    assert res["config"] == GraphFeaturizer().config()


def test_rss_child_reads_a_file(bench, molecules_csv, capsys):
    bench._rss_child(str(molecules_csv), chunk_size=40)
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 100 and out["failures"] == 0 and out["chunks"] == 3
    assert out["peak_rss_mb"] >= out["rss_after_imports_mb"] > 0
