"""UMAP maps of a library's embeddings, computed once and cached in the library's folder.

A map is fitted on a seeded random sample of the library (``sample_size`` molecules; UMAP's
cost grows faster than linearly) and every other molecule is then placed with the fitted
model's ``transform`` (``transform="umap"``) or, faster, at the similarity-weighted mean of its
nearest sample molecules' coordinates (``transform="knn"``). Coordinates are written to
``LIB/cache/map.npy`` (float32 [n, 2]) beside ``map.json`` (the parameters, the library size
and a fingerprint of the vectors), so a rebuilt or appended library never shows a stale map.
The k-means clusters the map can be coloured by are cached the same way
(``cache/clusters-K.npy`` + ``clusters-K.json``, :func:`cluster_labels`).

    >>> from mmsa.library import open_library
    >>> from mmsa.library.maps import ensure_map
    >>> coords = ensure_map(open_library("approved-drugs"))   # doctest: +SKIP

umap-learn (and numba) are imported inside :func:`compute_map` only, scikit-learn inside
:func:`compute_clusters`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAP_FILE = "map.npy"
MAP_META = "map.json"
CLUSTERS_FILE = "clusters-{k}.npy"
#: k-means clusters the Map page colours by (computed with the map at build time)
N_CLUSTERS = 12
FORMAT = 1

#: ``progress(done, total)``: called as the work advances (same shape as the store's)
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class MapParams:
    """Everything that determines a map; stored in ``map.json`` and compared on load."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    sample_size: int = 15_000
    transform: str = "knn"  # "knn" | "umap": how molecules outside the sample are placed
    knn: int = 10
    seed: int = 42


def vectors_fingerprint(vectors: np.ndarray) -> str:
    """A cheap fingerprint of a [n, dim] array: its shape and up to 2,048 evenly spaced rows."""
    vectors = np.asarray(vectors)
    h = hashlib.sha256(repr(vectors.shape).encode())
    if len(vectors):
        idx = np.unique(np.linspace(0, len(vectors) - 1, num=min(len(vectors), 2048)).astype(np.int64))
        h.update(np.ascontiguousarray(vectors[idx], dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


def _knn_searcher(vectors: np.ndarray):
    """``search(queries, k) -> (similarities [q, k], rows [q, k])`` over ``vectors`` by inner
    product: FAISS flat search (fused top-k) when importable, else numpy."""
    try:
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))

        def search(q: np.ndarray, k: int):
            sims, rows = index.search(np.ascontiguousarray(q, dtype=np.float32), k)
            return sims, rows

    except ImportError:  # pragma: no cover - faiss is a dependency, numpy is the fallback

        def search(q: np.ndarray, k: int):
            sims = q @ vectors.T
            nn = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else (
                np.broadcast_to(np.arange(sims.shape[1]), sims.shape))
            return np.take_along_axis(sims, nn, axis=1), nn

    return search


def place_points(
    queries: np.ndarray, vectors: np.ndarray, coords: np.ndarray, k: int = 10, block: int = 4096
) -> np.ndarray:
    """Map positions for new points from their nearest neighbours among placed points.

    Args:
        queries: float [q, dim] L2-normalised vectors to place.
        vectors: float [n, dim] L2-normalised vectors of points already on the map.
        coords: float [n, 2] their map coordinates.
        k: neighbours averaged, weighted by inverse squared cosine distance.
    Returns:
        float32 [q, 2]. Rows of ``queries`` that are not finite get NaN.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    vectors = np.asarray(vectors, dtype=np.float32)
    coords = np.asarray(coords, dtype=np.float32)
    out = np.full((len(queries), 2), np.nan, dtype=np.float32)
    if len(vectors) == 0 or len(queries) == 0:
        return out
    k = max(1, min(k, len(vectors)))
    ok = np.isfinite(queries).all(axis=1)
    q_ok = np.flatnonzero(ok)
    search = _knn_searcher(vectors)
    for start in range(0, len(q_ok), block):
        rows = q_ok[start:start + block]
        s, nn = search(queries[rows], k)
        # inverse squared cosine distance: an identical vector lands on its neighbour
        d = np.maximum(1.0 - s, 0.0)
        w = 1.0 / (d + 1e-4) ** 2
        w /= w.sum(axis=1, keepdims=True)
        out[rows] = np.einsum("bk,bkd->bd", w, coords[nn])
    return out


def _exact_knn(vectors: np.ndarray, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of L2-normalised ``vectors`` [n, dim] among themselves, self included
    first: (indices int64 [n, k], cosine distances float32 [n, k]), nearest first."""
    n = len(vectors)
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        sims = vectors[start:start + block] @ vectors.T
        rows = np.arange(start, min(start + block, n))
        sims[np.arange(len(rows)), rows] = np.inf  # self first
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        nn = np.take_along_axis(part, order, axis=1)
        idx[rows] = nn
        d = 1.0 - np.take_along_axis(sims, nn, axis=1)
        d[:, 0] = 0.0
        dist[rows] = np.maximum(d, 0.0)
    return idx, dist


def compute_map(
    vectors: np.ndarray, params: MapParams | None = None, progress: Progress | None = None
) -> np.ndarray:
    """2D UMAP coordinates of ``vectors`` (float [n, dim], L2-normalised) -> float32 [n, 2].

    Deterministic for a given ``params.seed`` (single-threaded UMAP when seeded). Tiny inputs
    (fewer than 4 rows) get a PCA layout instead: UMAP needs a neighbourhood.
    ``progress(done, total)`` counts steps: (0, total) before the fit, 1 for the fit, then
    one per transformed block.
    """
    params = params or MapParams()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if n < 4:
        centred = vectors - vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((n, 2), dtype=np.float32)
        proj = centred @ vt[:2].T
        out[:, : proj.shape[1]] = proj
        if progress:
            progress(1, 1)
        return out

    import umap  # heavy (numba); imported here only

    rng = np.random.default_rng(params.seed)
    if n > params.sample_size:
        sample = np.sort(rng.choice(n, size=params.sample_size, replace=False))
    else:
        sample = np.arange(n)
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    block = 10_000
    n_blocks = -(-len(rest) // block)
    total = 1 + n_blocks
    log.info("UMAP: fitting %d of %d molecules (seed %d)", len(sample), n, params.seed)
    if progress:
        progress(0, total)
    n_neighbors = max(2, min(params.n_neighbors, len(sample) - 1))
    kwargs = {}
    if params.transform == "knn":
        # exact kNN by matrix product (faster here than UMAP's NN-descent and its JIT warm-up)
        knn_idx, knn_dist = _exact_knn(vectors[sample], n_neighbors)
        kwargs["precomputed_knn"] = (knn_idx, knn_dist, None)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=params.min_dist,
        metric=params.metric,
        random_state=params.seed,
        init="spectral" if len(sample) > n_neighbors + 1 else "random",
        **kwargs,
    )
    coords = np.empty((n, 2), dtype=np.float32)
    with warnings.catch_warnings():  # seeded => single thread; no NNDescent index: both known
        warnings.filterwarnings("ignore", message=".*(overridden to 1|knn_search_index).*")
        coords[sample] = reducer.fit_transform(vectors[sample]).astype(np.float32)
    if progress:
        progress(1, total)
    for b in range(n_blocks):
        rows = rest[b * block:(b + 1) * block]
        if params.transform == "umap":
            coords[rows] = reducer.transform(vectors[rows]).astype(np.float32)
        elif params.transform == "knn":
            coords[rows] = place_points(vectors[rows], vectors[sample], coords[sample], k=params.knn)
        else:
            raise ValueError(f"unknown transform {params.transform!r} (use 'knn' or 'umap')")
        if progress:
            progress(2 + b, total)
    return coords


def _cache_dir(library) -> Path:
    path = getattr(library, "cache_dir", None)
    if path is None:
        path = Path(library.path) / "cache"
    return Path(path)


def _read_cache(meta_path: Path, array_path: Path, what: str) -> tuple[dict, np.ndarray] | None:
    """``(meta, array)`` of a cache entry (JSON + .npy, no pickle); None when either file is
    missing or unreadable (logged: the caller recomputes)."""
    if not (meta_path.is_file() and array_path.is_file()):
        return None
    try:
        return json.loads(meta_path.read_text()), np.load(array_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s cache %s: %s", what, array_path, exc)
        return None


def load_map(library, params: MapParams | None = None) -> np.ndarray | None:
    """The cached coordinates of ``library`` if they match its vectors and ``params``, else None."""
    params = params or MapParams()
    folder = _cache_dir(library)
    meta_path, coords_path = folder / MAP_META, folder / MAP_FILE
    cached = _read_cache(meta_path, coords_path, "map")
    if cached is None:
        return None
    meta, coords = cached
    vectors = library.vectors
    if (
        meta.get("format") != FORMAT
        or meta.get("params") != asdict(params)
        or meta.get("n") != len(vectors)
        or coords.shape != (len(vectors), 2)
        or meta.get("fingerprint") != vectors_fingerprint(vectors)
    ):
        log.info("map cache in %s is stale; recomputing", folder)
        return None
    return coords.astype(np.float32, copy=False)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_map(library, coords: np.ndarray, params: MapParams | None = None) -> Path:
    """Write ``coords`` (float [n, 2]) and their parameters into the library's cache folder."""
    params = params or MapParams()
    folder = _cache_dir(library)
    coords = np.asarray(coords, dtype=np.float32)
    meta = {
        "format": FORMAT,
        "params": asdict(params),
        "n": int(len(coords)),
        "fingerprint": vectors_fingerprint(library.vectors),
    }
    _atomic_write(folder / MAP_FILE, lambda fh: np.save(fh, coords, allow_pickle=False))
    _atomic_write(folder / MAP_META, lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
    return folder / MAP_FILE


def ensure_map(
    library, params: MapParams | None = None, progress: Progress | None = None
) -> np.ndarray:
    """Cached map coordinates of ``library`` (float32 [n, 2]), computing and caching them if
    needed. ``library`` needs ``.vectors`` and ``.cache_dir`` (or ``.path``). A read-only
    library folder still gets its map (logged, not cached)."""
    params = params or MapParams()
    coords = load_map(library, params)
    if coords is not None:
        if progress:
            progress(1, 1)
        return coords
    coords = compute_map(np.asarray(library.vectors), params, progress)
    try:
        save_map(library, coords, params)
    except OSError as exc:
        log.warning("could not cache the map of %s: %s", getattr(library, "name", "?"), exc)
    return coords


def compute_clusters(vectors: np.ndarray, n_clusters: int = N_CLUSTERS, seed: int = 42
                     ) -> np.ndarray:
    """K-means cluster of each row of ``vectors`` (float [n, dim]) -> int32 [n], seeded
    (MiniBatchKMeans, 3 inits; about 2 s for 100,000 256-d vectors on two cores)."""
    from sklearn.cluster import MiniBatchKMeans

    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.int32)
    n_clusters = max(1, min(n_clusters, len(vectors)))
    km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=4096)
    return km.fit_predict(vectors).astype(np.int32)


def _clusters_paths(library, n_clusters: int) -> tuple[Path, Path]:
    path = _cache_dir(library) / CLUSTERS_FILE.format(k=n_clusters)
    return path, path.with_suffix(".json")


def load_clusters(library, n_clusters: int = N_CLUSTERS, seed: int = 42) -> np.ndarray | None:
    """The cached cluster labels of ``library`` if they were computed on its current vectors
    (fingerprint and size) with this ``n_clusters`` and ``seed``, else None."""
    vectors = library.vectors
    n_clusters = max(1, min(n_clusters, len(vectors)))
    path, meta_path = _clusters_paths(library, n_clusters)
    cached = _read_cache(meta_path, path, "cluster")
    if cached is None:
        return None
    meta, labels = cached
    if (meta.get("fingerprint") != vectors_fingerprint(vectors) or meta.get("seed") != seed
            or labels.shape != (len(vectors),)):
        log.info("cluster cache %s is stale; recomputing", path)
        return None
    return labels.astype(np.int32, copy=False)


def cluster_labels(library, n_clusters: int = N_CLUSTERS, seed: int = 42) -> np.ndarray:
    """K-means cluster of each molecule (int32 [n]) on the embeddings: from
    ``cache/clusters-K.npy`` (see :func:`load_clusters`), else computed
    (:func:`compute_clusters`) and cached like the map (a read-only folder: logged)."""
    labels = load_clusters(library, n_clusters, seed)
    if labels is not None:
        return labels
    vectors = np.asarray(library.vectors, dtype=np.float32)
    labels = compute_clusters(vectors, n_clusters, seed)
    path, meta_path = _clusters_paths(library, max(1, min(n_clusters, len(vectors))))
    meta = {"fingerprint": vectors_fingerprint(vectors), "seed": seed}
    try:
        _atomic_write(path, lambda fh: np.save(fh, labels, allow_pickle=False))
        _atomic_write(meta_path, lambda fh: fh.write(json.dumps(meta).encode()))
    except OSError as exc:
        log.warning("could not cache the clusters of %s: %s", getattr(library, "name", "?"), exc)
    return labels
