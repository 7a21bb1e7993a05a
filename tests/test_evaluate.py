"""Evaluation: scaffold splits, probes, ECFP baseline, table writer, tiny end-to-end run."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mmsa import evaluate as ev
from mmsa.evaluate import probes
from mmsa.types import InputError

RINGS = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "c1ccoc1", "C1CCNCC1", "c1ccsc1", "C1CCOC1",
         "c1cnccn1", "C1CC1", "c1ccc2ccccc2c1", "C1CCCC1", "c1cn[nH]c1"]
SUBS = ["C", "CC", "O", "N", "Cl", "F", "C(=O)O", "OC", "N#C", "CCC"]


def _molecules(n_scaffold_pairs: int = 40, per_scaffold: int = 3) -> list[str]:
    """Varied drug-like-ish SMILES: two rings joined by CC, plus a substituent; acyclics too."""
    out = []
    pairs = [(a, b) for i, a in enumerate(RINGS) for b in RINGS[i:]][:n_scaffold_pairs]
    for k, (a, b) in enumerate(pairs):
        for j in range(per_scaffold):
            sub = SUBS[(k + j) % len(SUBS)]
            out.append(f"{sub}{a}CC{b}")
    out += ["CCO", "CCCCN", "CC(C)O", "OCCO", "CCOCC", "CC(=O)O"]
    return out


@pytest.fixture(scope="module")
def smiles() -> list[str]:
    return _molecules()


@pytest.fixture(scope="module")
def scaffolds(smiles) -> list[str]:
    out = [ev.murcko_scaffold(s) for s in smiles]
    assert None not in out
    return out


# ----------------------------------------------------------------------------- scaffolds


def test_murcko_scaffold_basics():
    assert ev.murcko_scaffold("CCc1ccccc1C(=O)N") == "c1ccccc1"
    assert ev.murcko_scaffold("Cc1ccccc1") == ev.murcko_scaffold("c1ccccc1O")
    assert ev.murcko_scaffold("CCO") == ""  # acyclic
    assert ev.murcko_scaffold("C1CC") is None  # invalid
    assert ev.murcko_scaffold("") is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scaffold_split_invariants(scaffolds, seed):
    split = ev.scaffold_split(scaffolds, seed=seed)
    n = len(scaffolds)
    tr, va, te = (set(x.tolist()) for x in (split.train, split.valid, split.test))
    # a partition of all molecules
    assert tr | va | te == set(range(n))
    assert len(tr) + len(va) + len(te) == n
    # no scaffold in two parts
    s = np.asarray(scaffolds, dtype=object)
    sets = [set(s[list(p)]) for p in (tr, va, te)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # sizes near 80/10/10 (whole scaffold groups of <= 6 molecules move at once)
    assert len(tr) <= 0.8 * n
    assert abs(len(tr) - 0.8 * n) <= 6
    assert abs(len(va) - 0.1 * n) <= 6
    assert len(te) >= 0.1 * n - 6


def test_scaffold_split_deterministic_and_seeded(scaffolds):
    a = ev.scaffold_split(scaffolds, seed=1)
    b = ev.scaffold_split(list(scaffolds), seed=1)
    for x, y in zip((a.train, a.valid, a.test), (b.train, b.valid, b.test)):
        np.testing.assert_array_equal(x, y)
    c = ev.scaffold_split(scaffolds, seed=2)
    assert not np.array_equal(a.test, c.test)


def test_scaffold_split_big_scaffold_goes_to_train():
    scaffolds = ["big"] * 30 + [f"s{i}" for i in range(70)]
    for seed in range(3):
        split = ev.scaffold_split(scaffolds, seed=seed)
        assert set(range(30)) <= set(split.train.tolist())


def test_scaffold_split_rejects_bad_fractions(scaffolds):
    with pytest.raises(ValueError):
        ev.scaffold_split(scaffolds, fractions=(0.5, 0.1, 0.1))


# ----------------------------------------------------------------------------- probes


def _blobs(n=300, d=8, shift=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n).astype(float)
    X = rng.normal(size=(n, d))
    X[:, 0] += shift * (2 * y - 1)
    return X, y


def _random_split(n, seed=0):
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(0.8 * n), int(0.9 * n)
    return ev.Split(np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:]), seed)


def test_probe_classification_separable_vs_noise():
    X, y = _blobs()
    split = _random_split(len(y))
    good = ev.fit_probe(X, y, split, "classification")
    assert good.metric == "roc_auc"
    assert good.test > 0.97
    assert good.param in ev.C_GRID
    noise = np.random.default_rng(5).normal(size=X.shape)
    bad = ev.fit_probe(noise, y, split, "classification")
    assert bad.test < 0.75


def test_probe_regression_linear_vs_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 10))
    w = rng.normal(size=10)
    y = X @ w + 0.05 * rng.normal(size=400)
    split = _random_split(400)
    good = ev.fit_probe(X, y, split, "regression")
    assert good.metric == "rmse"
    assert good.test < 0.2
    bad = ev.fit_probe(rng.normal(size=X.shape), y, split, "regression")
    assert bad.test > 0.8 * np.std(y)
    # RMSE is in the target's units
    assert good.test == pytest.approx(
        probes._score("regression", y[split.test], y[split.test] + good.test), rel=1e-9
    )


def test_probe_picks_regularisation_on_valid():
    # many useless features, few samples: strong regularisation must win on valid
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 200))
    y = X[:, 0] + 0.5 * rng.normal(size=120)
    res = ev.fit_probe(X, y, _random_split(120), "regression")
    assert res.param >= 10.0


def test_impute_failed_uses_train_mean():
    X = np.array([[1.0, 2.0], [3.0, 4.0], [np.nan, np.nan], [100.0, 100.0]])
    ok = np.array([True, True, False, True])
    out = ev.impute_failed(X, ok, train=np.array([0, 1, 2]))
    np.testing.assert_allclose(out[2], [2.0, 3.0])
    np.testing.assert_allclose(out[3], [100.0, 100.0])
    assert np.isfinite(out).all()


# ----------------------------------------------------------------------------- ECFP


def test_ecfp4_tiny_fixture():
    smi = ["c1ccccc1O", "Oc1ccccc1", "CCN", "not a smiles"]
    X, ok = ev.ecfp4(smi)
    assert X.shape == (4, 2048) and X.dtype == np.float32
    assert ok.tolist() == [True, True, True, False]
    assert set(np.unique(X[ok])) <= {0.0, 1.0}
    np.testing.assert_array_equal(X[0], X[1])  # same molecule, two spellings
    assert 0 < X[2].sum() < X[0].sum()
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    ref = gen.GetFingerprintAsNumPy(Chem.MolFromSmiles("CCN"))
    np.testing.assert_array_equal(X[2], ref.astype(np.float32))


# ----------------------------------------------------------------------------- tables


def _fake_result() -> ev.EvaluationResult:
    records = []
    values = {("A", "b3db"): [0.9, 0.8, 0.85], ("B", "b3db"): [0.7, 0.7, 0.7],
              ("A", "freesolv"): [1.0, 1.2, 1.1], ("B", "freesolv"): [2.0, 2.0, 2.3]}
    for (m, t), vals in values.items():
        for seed, v in enumerate(vals):
            metric = "roc_auc" if t == "b3db" else "rmse"
            records.append(ev.Record(m, t, seed, metric, v, v, 1.0, False, 8, 1, 1, 0))
    info = {"b3db": {"title": "B3DB BBB", "higher_is_better": True, "n": 10},
            "freesolv": {"title": "FreeSolv", "higher_is_better": False, "n": 10}}
    return ev.EvaluationResult(records, ["A", "B"], ["b3db", "freesolv"], [0, 1, 2],
                               task_info=info)


def test_summary_and_table():
    res = _fake_result()
    summ = res.summary().set_index(["method", "task"])
    assert summ.loc[("A", "b3db"), "mean"] == pytest.approx(0.85)
    assert summ.loc[("A", "b3db"), "std"] == pytest.approx(0.05)
    assert summ.loc[("B", "freesolv"), "std"] == pytest.approx(np.std([2, 2, 2.3], ddof=1))
    table = ev.results_table(res).splitlines()
    assert table[0] == "| Method | B3DB BBB ROC-AUC ↑ | FreeSolv RMSE ↓ |"
    assert table[2] == "| A | 0.850 ± 0.050 | 1.100 ± 0.100 |"
    assert table[3].startswith("| B | 0.700 ± 0.000 | 2.100 ± 0.173 |")
    verdict = ev.comparisons(res, "A", ["B"])
    assert verdict[0].startswith("A beats B")
    assert ev.comparisons(res, "B", ["A"])[0].startswith("B loses to A")


def test_markdown_section_replaced_in_place(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Search\n\nsearch text\n\n## Embedding quality\n\nold\n"
                    "\n## App\n\napp text\n")
    ev.update_markdown_section(path, "Embedding quality", "new body")
    text = path.read_text()
    assert "old" not in text and "new body" in text
    assert text.index("## Search") < text.index("## Embedding quality") < text.index("## App")
    assert "search text" in text and "app text" in text
    ev.update_markdown_section(path, "Embedding throughput", "fast")
    ev.update_markdown_section(path, "Embedding throughput", "faster")
    text = path.read_text()
    assert text.count("## Embedding throughput") == 1 and "faster" in text
    ev.update_markdown_section(path, "Embedding quality 2", "q2", before="Embedding throughput")
    text = path.read_text()
    assert text.index("## Embedding quality 2") < text.index("## Embedding throughput")
    assert "## App" in text and text.count("## Embedding quality 2") == 1
    new = ev.update_markdown_section(tmp_path / "new.md", "Embedding quality", "x")
    assert new.read_text().startswith("# Benchmarks\n\n## Embedding quality\n\nx")


def test_json_has_no_nan(tmp_path):
    res = _fake_result()
    res.records[0].valid = float("nan")
    path = ev.write_json(tmp_path / "r.json", res.to_json())
    data = json.loads(path.read_text())
    assert data["records"][0]["valid"] is None
    assert {r["method"] for r in data["summary"]} == {"A", "B"}


# ----------------------------------------------------------------------------- evaluate()


def _task_csvs(tmp_path, smiles):
    rng = np.random.default_rng(0)
    n = len(smiles)
    size = np.array([len(s) for s in smiles], dtype=float)
    b3db = pd.DataFrame({"smiles": smiles, "id": range(n),
                         "label": (size > np.median(size)).astype(int)})
    b3db.loc[n] = ["C1CC", n, 1]  # unparsable: dropped and counted
    free = pd.DataFrame({"smiles": smiles, "id": range(n),
                         "hydration_free_energy_expt": -0.3 * size + rng.normal(size=n)})
    sol = pd.DataFrame({"smiles": smiles, "id": range(n), "logS": 0.1 * size + rng.normal(size=n)})
    paths = {}
    for name, df in (("b3db", b3db), ("freesolv", free), ("solubility", sol)):
        paths[name] = tmp_path / f"{name}.csv"
        df.to_csv(paths[name], index=False)
    return paths


def test_load_task_drops_and_counts(tmp_path, smiles):
    paths = _task_csvs(tmp_path, smiles)
    data = ev.load_task("b3db", paths["b3db"])
    assert len(data.smiles) == len(smiles) and data.n_dropped == 1
    assert set(np.unique(data.y)) == {0.0, 1.0}
    with pytest.raises(InputError):
        ev.load_task("freesolv", paths["b3db"])  # no hydration_free_energy_expt column
    with pytest.raises(InputError):
        ev.get_task("nope")


def test_evaluate_with_simple_methods(tmp_path, smiles):
    paths = _task_csvs(tmp_path, smiles)
    tasks = {name: ev.load_task(name, p) for name, p in paths.items()}

    def length(smi):  # the feature the synthetic targets are made of
        return np.array([[len(s)] for s in smi], dtype=np.float32), np.ones(len(smi), bool)

    def noise(smi):
        X = np.random.default_rng(3).normal(size=(len(smi), 4)).astype(np.float32)
        ok = np.ones(len(smi), bool)
        ok[0] = False
        X[0] = np.nan
        return X, ok

    res = ev.evaluate(tasks, {"length": length, "noise": noise})
    df = res.frame()
    assert len(df) == 2 * 3 * 3
    summ = res.summary().set_index(["method", "task"])["mean"]
    assert summ[("length", "b3db")] > summ[("noise", "b3db")]
    assert summ[("length", "freesolv")] < summ[("noise", "freesolv")]
    assert (df[df.method == "noise"].n_failed == 1).all()
    # the same splits for every method
    sizes = df.groupby(["task", "seed"])[["n_train", "n_valid", "n_test"]].nunique()
    assert (sizes == 1).all().all()


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A tiny random-weights 'shipped' checkpoint and two tiny ablation checkpoints."""
    torch = pytest.importorskip("torch")
    from mmsa.model import MMSA, MMSAConfig, save_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(123)  # not the random-init seed (0)
    shipped = save_checkpoint(MMSA(MMSAConfig.tiny()), root / "tiny.pt")
    abl = root / "ablations"
    for stem in ("full", "no_memory"):
        torch.manual_seed(1)
        cfg = MMSAConfig.tiny(**ev.ABLATIONS[stem][1])
        save_checkpoint(MMSA(cfg), abl / f"{stem}.pt")
    (abl / "no_memory.json").write_text(json.dumps({"steps": 7, "seed": 0, "n_molecules": 5}))
    return shipped, abl


@pytest.mark.slow
def test_mmsa_evaluate_end_to_end(tmp_path, smiles, tiny_checkpoints):
    from mmsa.cli import main

    shipped, abl = tiny_checkpoints
    paths = _task_csvs(tmp_path, smiles)
    out, js = tmp_path / "benchmarks.md", tmp_path / "evaluate.json"
    out.write_text("# Benchmarks\n\n## Search\n\nkept\n")
    argv = ["evaluate", "--checkpoint", str(shipped), "--out", str(out), "--json", str(js),
            "--ablations", str(abl), "--seeds", "0", "1", "--no-neighbours"]
    for name, p in paths.items():
        argv += ["--data", f"{name}={p}"]
    assert main(argv) == 0
    assert out.read_text() == "# Benchmarks\n\n## Search\n\nkept\n"  # docs only when asked
    assert main([*argv, "--write-docs"]) == 0
    text = out.read_text()
    assert "## Search\n\nkept" in text and "## Embedding quality" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| Method | B3DB BBB ROC-AUC ↑ | FreeSolv RMSE ↓ | Solubility RMSE ↓ |"
    names = [r.split(" | ")[0][2:] for r in rows[1:]]
    assert names == [ev.SHIPPED, ev.ECFP, ev.RANDOM, ev.ABLATIONS["full"][0],
                     ev.ABLATIONS["no_memory"][0]]
    assert all(re.search(r"\d\.\d{3} ± \d\.\d{3}", r) for r in rows[1:])
    assert "graph_only, no_hypergraph" in text  # missing ablations are named
    data = json.loads(js.read_text())
    assert data["methods"] == names
    assert len(data["records"]) == 5 * 3 * 2
    assert {r["task"] for r in data["records"]} == {"b3db", "freesolv", "solubility"}
    assert data["tasks"]["b3db"]["n_dropped"] == 1
    assert data["notes"]["ablations"]["no_memory"]["steps"] == 7
    assert data["notes"]["ablations_missing"] == ["graph_only", "no_hypergraph"]
    # the random-init encoder is not the shipped one
    rec = {(r["method"], r["task"], r["seed"]): r["value"] for r in data["records"]}
    assert rec[(ev.SHIPPED, "freesolv", 0)] != rec[(ev.RANDOM, "freesolv", 0)]


def test_random_init_checkpoint_same_architecture(tmp_path, tiny_checkpoints):
    from mmsa.model import load_checkpoint, read_checkpoint

    shipped, _ = tiny_checkpoints
    out = ev.random_init_checkpoint(shipped, tmp_path / "r.pt", seed=3)
    a, b = read_checkpoint(shipped), read_checkpoint(out)
    assert a["hyper_parameters"] == b["hyper_parameters"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    key = next(k for k, v in a["state_dict"].items() if v.ndim == 2)
    assert not np.allclose(a["state_dict"][key].numpy(), b["state_dict"][key].numpy())
    load_checkpoint(out)  # rebuilds


def test_effective_rank():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(500, 8))
    assert 7.0 < ev.effective_rank(full) <= 8.0
    collapsed = np.outer(rng.normal(size=500), rng.normal(size=8))
    assert ev.effective_rank(collapsed) == pytest.approx(1.0, abs=1e-6)
    assert ev.effective_rank(np.ones((10, 4))) == 0.0


def test_neighbour_metrics_against_brute_force():
    from mmsa.evaluate.neighbours import Space, average_precision, knn_task_scores, retrieval_map

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.normal(size=40)
    space = Space("cosine", vectors=X)
    train, queries = np.arange(30), np.arange(30, 40)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    pred = [y[train][np.argsort(-(Xn[train] @ Xn[q]))[:5]].mean() for q in queries]
    rmse = np.sqrt(np.mean((np.array(pred) - y[queries]) ** 2))
    assert knn_task_scores(space, y, "regression", train, queries)["knn_rmse"] == \
        pytest.approx(rmse, rel=1e-5)
    # AP: relevant items ranked 1 and 3 -> (1/1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.5, 0.4]), np.array([1, 0, 1])) == \
        pytest.approx((1 + 2 / 3) / 2)
    # two well separated "targets" + decoys: perfect retrieval
    bits = np.zeros((6, 8))
    bits[:2, :4] = 1
    bits[2:4, 4:] = 1
    bits[4:, [0, 4]] = 1
    res = retrieval_map(Space("tanimoto", bits=bits), ["a", "a", "b", "b", "", ""])
    assert res["a"] == pytest.approx(1.0) and res["all"] == pytest.approx(1.0)
    hyb = Space("hybrid", vectors=X[:6], bits=bits, weight=0.25)
    np.testing.assert_allclose(hyb.similarity(np.arange(6)),
                               0.25 * Space("cosine", vectors=X[:6]).similarity(np.arange(6))
                               + 0.75 * Space("tanimoto", bits=bits).similarity(np.arange(6)),
                               rtol=1e-5)
