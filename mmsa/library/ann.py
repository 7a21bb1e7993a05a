"""FAISS indexes over L2-normalised vectors (inner product = cosine), checked against exact.

numpy in, numpy out; faiss is imported inside the functions. Exact search streams over the
(memory-mapped) vectors in blocks, so it never needs a second copy of the library in RAM.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from mmsa.types import LibraryError

log = logging.getLogger(__name__)

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq", "ivfopq")
#: index types whose candidates are re-ranked by exact inner product (:func:`search`)
RERANKED = ("ivfpq", "ivfopq")
#: index types with inverted lists (an ``nprobe``)
IVF_TYPES = ("ivf", *RERANKED)
#: IVF-OPQ: iterations of the OPQ rotation's alternating optimisation (FAISS default 50; the
#: rotation converges in ~20 on embeddings, and each costs a PQ training)
OPQ_NITER = 25
#: IVF-OPQ: FAISS trains the rotation with 8-bit sub-quantizers (256 centroids each), which
#: need ~39 * 256 vectors; smaller libraries get plain IVF-PQ (recorded as a fallback)
OPQ_MIN_VECTORS = 39 * 256
#: recall@10 an approximate index must reach against exact search
MIN_RECALL = 0.95
#: the search knob is tuned for MIN_RECALL + this margin on the (leave-one-out) build sample,
#: because recall on new query molecules runs a little lower (all of MOSES: 0.967 at build,
#: 0.946 on outside queries)
RECALL_MARGIN = 0.02
RECALL_SAMPLE = 1000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
#: ``kind="auto"``: exact below APPROX_THRESHOLD vectors, HNSW below IVF_THRESHOLD, IVF-flat
#: below IVFPQ_THRESHOLD, else IVF-PQ. IVF-flat keeps every float vector in RAM (4 d bytes,
#: 1 KB at d=256: 5 GB at 5M molecules); IVF-PQ keeps PQ_BYTES_PER_DIM * d bytes of code
#: (32 B at d=256) and re-ranks its candidates from the memory-mapped vectors.
APPROX_THRESHOLD = 50_000
IVF_THRESHOLD = 1_000_000
IVFPQ_THRESHOLD = 5_000_000
#: IVF-PQ: one 8-bit sub-quantizer per 8 dimensions (d / 8 bytes per vector)
PQ_DIMS_PER_CODE = 8
#: IVF-PQ: candidates re-ranked by exact inner product per query (raised with nprobe when
#: recall needs it); at least RERANK_PER_K * k
RERANK = (64, 128, 256, 512)
RERANK_PER_K = 4
BLOCK = 65_536


def _faiss():
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines are noise
    import faiss

    return faiss


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner product of ``queries`` [m, d] over ``vectors`` [n, d] (any array,
    e.g. a memmap), streamed in blocks of rows. Returns (scores float32 [m, k], rows int64
    [m, k]); rows -1 (score -inf) where n < k. Ties are broken by the lower row."""
    faiss = _faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    m, n = len(queries), len(vectors)
    heap_d = np.full((m, k), -np.inf, dtype=np.float32)
    heap_i = np.full((m, k), -1, dtype=np.int64)
    for start in range(0, n, block):
        xb = np.ascontiguousarray(vectors[start : start + block], dtype=np.float32)
        kk = min(k, len(xb))
        d, i = faiss.knn(queries, xb, kk, metric=faiss.METRIC_INNER_PRODUCT)
        i = np.where(i >= 0, i + start, -1)
        cat_d = np.concatenate([heap_d, d], axis=1)
        cat_i = np.concatenate([heap_i, i], axis=1)
        order = _topk_order(cat_d, cat_i, k)
        heap_d = np.take_along_axis(cat_d, order, axis=1)
        heap_i = np.take_along_axis(cat_i, order, axis=1)
        release_pages(vectors)
    return heap_d, heap_i


def _topk_order(d: np.ndarray, i: np.ndarray, k: int) -> np.ndarray:
    """Column order of each row's best k: by score descending, then row ascending (-1
    last); two stable sorts over the whole array (a row-by-row lexsort, vectorised)."""
    key_i = np.where(i < 0, np.iinfo(np.int64).max, i)
    by_row = np.argsort(key_i, axis=1, kind="stable")
    by_score = np.argsort(-np.take_along_axis(d, by_row, axis=1), axis=1, kind="stable")
    return np.take_along_axis(by_row, by_score, axis=1)[:, :k]


def _drop_self(rows: np.ndarray, self_rows: np.ndarray, k: int) -> np.ndarray:
    """Each row of ``rows`` without its query's own row, cut to k columns (-1 padded)."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for r, (row, me) in enumerate(zip(rows, self_rows)):
        keep = row[(row != me) & (row >= 0)][:k]
        out[r, : len(keep)] = keep
    return out


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each query's exact top-k rows found in its approximate top-k."""
    hits = 0
    total = 0
    for a, e in zip(approx[:, :k], exact[:, :k]):
        e = e[e >= 0]
        hits += len(np.intersect1d(a[a >= 0], e))
        total += len(e)
    return hits / total if total else 1.0


def release_pages(vectors) -> None:
    """Let go of the pages a read-only :class:`numpy.memmap` has read so far
    (``madvise(MADV_DONTNEED)``): they stay in the page cache but leave this process's RSS.
    Without it, one pass over a library's vectors keeps all of them resident beside the
    index's own copy (all of MOSES: 2 GB twice). Anything else (an in-memory array, a
    writable map, a system without madvise) is left alone; the data are never changed."""
    import mmap

    mm = getattr(vectors, "_mmap", None)
    if (mm is None or getattr(vectors, "mode", None) != "r" or not hasattr(mm, "madvise")
            or not hasattr(mmap, "MADV_DONTNEED")):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):  # pragma: no cover - closed map or refused advice
        pass


def _add_blocks(index, vectors, progress: Callable[[int, int], None] | None, block: int = BLOCK):
    n = len(vectors)
    for start in range(0, n, block):
        index.add(np.ascontiguousarray(vectors[start : start + block], dtype=np.float32))
        release_pages(vectors)
        if progress is not None:
            progress(min(start + block, n), n)


def build_index(
    vectors: np.ndarray,
    kind: str = "auto",
    *,
    approx_threshold: int = APPROX_THRESHOLD,
    ivf_threshold: int = IVF_THRESHOLD,
    ivfpq_threshold: int = IVFPQ_THRESHOLD,
    min_recall: float = MIN_RECALL,
    sample: int = RECALL_SAMPLE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
):
    """Build a FAISS index over ``vectors`` float32 [n, d] (L2-normalised).

    ``kind``: "flat" (exact inner product), "hnsw" (HNSW, M=32, efSearch raised until
    recall@10 >= ``min_recall``), "ivf" (IVF-flat, nlist ~ 2 sqrt(n), nprobe raised likewise),
    "ivfpq" (IVF with product-quantised codes, d/8 bytes a vector, nlist as IVF; each query's
    candidates are re-ranked by exact inner product over ``vectors``, see :func:`search`;
    nprobe, then the number re-ranked, raised until recall@10 >= ``min_recall``),
    "ivfopq" (IVF-PQ behind a learned OPQ rotation, FAISS ``OPQm,IVFnlist,PQm``: the rotation
    spreads the variance evenly over the sub-quantizers, so the same d/8 bytes of code rank
    candidates better; re-ranked and tuned as "ivfpq"; d*d floats of rotation on top; below
    :data:`OPQ_MIN_VECTORS` vectors, plain "ivfpq" with ``fallback_from: "ivfopq"``),
    "auto" (flat below ``approx_threshold`` vectors, hnsw below ``ivf_threshold``, ivf below
    ``ivfpq_threshold``, else ivfpq: HNSW searches fastest, but its construction costs
    ~0.35 ms of CPU per 256-d vector, about 12 CPU-minutes for MOSES, where IVF trains and
    fills in ~2; IVF-flat keeps 4 d bytes a vector in RAM, IVF-PQ d/8). An approximate index
    that cannot reach ``min_recall`` falls back to flat. Recall@10 against exact search is measured
    on ``sample`` seeded library vectors used as queries, leave-one-out (the query's own row
    is not counted).

    Returns (index, info) where info is the manifest's "index" entry: type, params,
    recall_at_10, recall_sample, build_seconds, ram_bytes_per_molecule (the index's own RAM,
    :func:`ram_bytes`).
    """
    faiss = _faiss()
    if kind not in INDEX_TYPES:
        raise ValueError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_TYPES)}")
    n, d = vectors.shape
    if kind == "auto":
        kind = ("flat" if n < approx_threshold else "hnsw" if n < ivf_threshold
                else "ivf" if n < ivfpq_threshold else "ivfpq")
    if kind == "ivfopq" and n < OPQ_MIN_VECTORS:
        log.info("%d vectors are too few to train an OPQ rotation (%d); building ivfpq", n,
                 OPQ_MIN_VECTORS)
        index, info = build_index(vectors, "ivfpq", min_recall=min_recall, sample=sample,
                                  seed=seed, progress=progress)
        info.setdefault("fallback_from", "ivfopq")
        info.setdefault("fallback_reason", f"fewer than {OPQ_MIN_VECTORS} vectors to train "
                                           f"the OPQ rotation")
        return index, info
    t0 = time.perf_counter()
    if kind == "flat" or n < 2:
        index = faiss.IndexFlatIP(d)
        _add_blocks(index, vectors, progress)
        info = {"type": "flat", "params": {}, "recall_at_10": 1.0, "recall_sample": 0}
        info["build_seconds"] = round(time.perf_counter() - t0, 3)
        info["ram_bytes_per_molecule"] = round(ram_bytes(index, info) / max(n, 1), 2)
        return index, info

    rng = np.random.default_rng(seed)
    qrows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    queries = np.ascontiguousarray(vectors[qrows], dtype=np.float32)
    k = min(10, n - 1)
    # leave-one-out: each sampled vector queries the library without counting itself, so
    # the measure is not inflated by the trivially found query point
    _, exact = exact_search(vectors, queries, k + 1)
    exact = _drop_self(exact, qrows, k)

    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        _add_blocks(index, vectors, progress)
        params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
        knob, values = "efSearch", [16, 32, 64, 128, 256, 512, 1024]

        def set_knob(v):
            index.hnsw.efSearch = v
    else:  # ivf, ivfpq, ivfopq
        # 2 sqrt(n) lists, k-means of 10 iterations on 50 vectors per list: ~1 CPU-minute
        # for MOSES at d=256 (4 sqrt(n) lists and 25 iterations would cost ~10)
        nlist = int(max(1, min(n // 39, round(2 * np.sqrt(n)))))
        if kind in RERANKED:
            m_codes = pq_codes(d)
            # 8-bit codebooks (256 centroids) need ~39 * 256 training vectors; fewer bits on
            # small libraries
            nbits = int(np.clip(np.floor(np.log2(max(n, 2) / 39)), 1, 8))
            if kind == "ivfopq":
                index = faiss.index_factory(d, f"OPQ{m_codes},IVF{nlist},PQ{m_codes}x{nbits}",
                                            faiss.METRIC_INNER_PRODUCT)
                opq = faiss.downcast_VectorTransform(index.chain.at(0))
                opq.niter = OPQ_NITER
            else:
                index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m_codes, nbits,
                                         faiss.METRIC_INNER_PRODUCT)
            ivf_of(index).pq.cp.niter = 10
            n_train = min(n, max(50 * nlist, 64 * 2**nbits))
            params = {"nlist": nlist, "m": m_codes, "nbits": nbits}
            if kind == "ivfopq":
                params["opq_niter"] = OPQ_NITER
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            n_train = min(n, 50 * nlist)
            params = {"nlist": nlist}
        ivf_of(index).cp.niter = 10
        train_rows = np.sort(rng.choice(n, size=n_train, replace=False))
        index.train(np.ascontiguousarray(vectors[train_rows], dtype=np.float32))
        release_pages(vectors)
        _add_blocks(index, vectors, progress)
        knob = "nprobe"
        nprobes = [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if v <= nlist]
        if nprobes[-1] != nlist:
            nprobes.append(nlist)
        if kind in RERANKED:
            # (nprobe, rerank) pairs: nprobe first, then more candidates re-ranked
            values = [(p, r) for r in RERANK for p in nprobes]
        else:
            values = nprobes

        def set_knob(v):
            if kind in RERANKED:
                ivf_of(index).nprobe = v[0]
                params["rerank"] = v[1]
            else:
                index.nprobe = v

    recall = 0.0
    target = max(min_recall, min(1.0, min_recall + RECALL_MARGIN))
    for v in values:
        set_knob(v)
        if kind in RERANKED:
            _, approx = search(index, {"type": kind, "params": params}, vectors, queries, k + 1)
        else:
            _, approx = index.search(queries, k + 1)
        recall = recall_at_k(_drop_self(approx, qrows, k), exact, k)
        log.info("%s %s=%s: recall@10 %.4f", kind, knob, v, recall)
        if recall >= target or (v == values[-1] and recall >= min_recall):
            if kind in RERANKED:
                params["nprobe"], params["rerank"] = int(v[0]), int(v[1])
            else:
                params[knob] = v
            break
    else:
        log.warning(
            "%s index reached recall@10 %.3f < %.2f; falling back to exact flat search",
            kind, recall, min_recall,
        )
        index = faiss.IndexFlatIP(d)
        _add_blocks(index, vectors, None)
        info = {"type": "flat", "params": {}, "recall_at_10": 1.0, "recall_sample": 0,
                "fallback_from": kind, "fallback_recall": round(float(recall), 4)}
        info["build_seconds"] = round(time.perf_counter() - t0, 3)
        info["ram_bytes_per_molecule"] = round(ram_bytes(index, info) / max(n, 1), 2)
        return index, info
    info = {
        "type": kind,
        "params": params,
        "recall_at_10": round(float(recall), 4),
        "recall_sample": int(len(qrows)),
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    info["ram_bytes_per_molecule"] = round(ram_bytes(index, info) / n, 2)
    return index, info


def pq_codes(d: int) -> int:
    """Sub-quantizers of an IVF-PQ index over d-dim vectors: one per PQ_DIMS_PER_CODE
    dimensions (a divisor of d, as FAISS needs)."""
    m = max(1, d // PQ_DIMS_PER_CODE)
    while d % m:
        m -= 1
    return m


def ivf_of(index):
    """The IndexIVF inside ``index`` (itself, or behind an OPQ transform), downcast."""
    faiss = _faiss()
    return faiss.downcast_index(faiss.extract_index_ivf(index))


def ram_bytes(index, info: dict) -> int:
    """Bytes of RAM the index itself holds (not the memory-mapped vectors an IVF-PQ search
    re-ranks from, which the OS pages in on demand): flat 4 d n; HNSW 4 d n plus its level-0
    neighbour lists (2 M int32 a vector; the upper levels, ~1/M of that, left out); IVF
    codes (4 d bytes for IVF-flat, d/8 for IVF-PQ) + an 8-byte id a vector, plus the
    centroids (and the PQ codebooks, and for IVF-OPQ the d x d rotation)."""
    n, d = int(index.ntotal), int(index.d)
    kind = info.get("type")
    if kind == "flat":
        return 4 * d * n
    if kind == "hnsw":
        return 4 * d * n + 2 * HNSW_M * 4 * n
    ivf = ivf_of(index)
    total = 8 * n + int(ivf.code_size) * n + 4 * d * int(ivf.nlist)
    if kind in RERANKED:
        pq = ivf.pq
        total += 4 * int(pq.M) * int(pq.ksub) * int(pq.dsub)
    if kind == "ivfopq":
        total += 4 * d * d
    return total


def _rerank(vectors: np.ndarray, queries: np.ndarray, cand: np.ndarray,
            k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of each query with its candidate rows (``vectors`` may be a
    memmap: only those rows are read), best k by score then row; -1/-inf padded."""
    m = len(queries)
    out_d = np.full((m, k), -np.inf, np.float32)
    out_i = np.full((m, k), -1, np.int64)
    for r in range(m):
        rows = np.unique(cand[r][cand[r] >= 0])  # sorted: sequential reads of the memmap
        if len(rows) == 0:
            continue
        sims = np.asarray(vectors[rows], dtype=np.float32) @ queries[r]
        order = np.lexsort((rows, -sims))[:k]
        out_d[r, :len(order)] = sims[order]
        out_i[r, :len(order)] = rows[order]
    return out_d, out_i


def search(index, info: dict, vectors: np.ndarray, queries: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-NN of ``queries`` float32 [m, d] through ``index`` (the manifest's ``info``).

    For "ivfpq" and "ivfopq" the index returns max(rerank, RERANK_PER_K * k) candidates by
    approximate (PQ) score, re-ranked by their exact inner product from ``vectors`` [n, d] (e.g. the
    library's memmap), so the returned scores are exact cosines. Other types search as they
    are. Returns (scores float32 [m, k], rows int64 [m, k]); rows -1 where fewer than k."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if info.get("type") not in RERANKED:
        d, i = index.search(queries, k)
        return d, i.astype(np.int64)
    n = int(index.ntotal)
    rerank = int(info.get("params", {}).get("rerank", RERANK[-1]))
    kk = min(n, max(k, rerank, RERANK_PER_K * k))
    _, cand = index.search(queries, kk)
    return _rerank(vectors, queries, cand, k)


def merge_topk(scores: list[np.ndarray], rows: list[np.ndarray],
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """The global top-k of per-part results (scores [m, k_j], global rows [m, k_j], -1
    padded): best k by score, ties by the lower row; (float32 [m, k], int64 [m, k])."""
    d = np.concatenate(scores, axis=1).astype(np.float32)
    i = np.concatenate(rows, axis=1).astype(np.int64)
    d = np.where(i < 0, -np.inf, d)
    if d.shape[1] < k:
        pad = k - d.shape[1]
        d = np.concatenate([d, np.full((len(d), pad), -np.inf, np.float32)], axis=1)
        i = np.concatenate([i, np.full((len(i), pad), -1, np.int64)], axis=1)
    order = _topk_order(d, i, k)
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def search_shards(parts, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-NN over a sharded library: ``parts`` = [(index, info, vectors, start), ...] (one
    per shard; ``vectors`` the shard's own [count, d] array, ``start`` its first global
    row). Each shard answers its own top-k through :func:`search` (re-ranked for IVF-PQ and
    IVF-OPQ shards), its rows are shifted by ``start``, and the global top-k is merged
    (:func:`merge_topk`). Exact shards give exactly the brute-force top-k over all rows.
    Returns (scores float32 [m, k], rows int64 [m, k]); -1 where fewer than k."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    scores, rows = [], []
    for index, info, vectors, start in parts:
        count = int(index.ntotal)
        if count == 0:
            continue
        d, i = search(index, info, vectors, queries, min(k, count))
        scores.append(d)
        rows.append(np.where(i >= 0, i + int(start), -1))
    if not scores:
        return (np.full((len(queries), k), -np.inf, np.float32),
                np.full((len(queries), k), -1, np.int64))
    return merge_topk(scores, rows, k)


def apply_params(index, info: dict) -> None:
    """Restore search-time parameters (efSearch / nprobe) recorded in ``info``."""
    params = info.get("params", {})
    if info.get("type") == "hnsw" and "efSearch" in params:
        index.hnsw.efSearch = int(params["efSearch"])
    elif info.get("type") in IVF_TYPES and "nprobe" in params:
        ivf_of(index).nprobe = int(params["nprobe"])


def write_index(index, path) -> None:
    _faiss().write_index(index, str(path))


def read_index(path, info: dict):
    """Read an index written by :func:`write_index` and restore its search parameters."""
    faiss = _faiss()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise LibraryError(f"cannot read FAISS index {path}: {exc}") from None
    apply_params(index, info)
    return index


def to_gpu_if_available(index):
    """Move ``index`` to GPU 0 when FAISS sees a GPU (flat indexes); else return it."""
    faiss = _faiss()
    try:
        if faiss.get_num_gpus() > 0 and isinstance(index, faiss.IndexFlat):
            res = faiss.StandardGpuResources()
            return faiss.index_cpu_to_gpu(res, 0, index)
    except (AttributeError, RuntimeError) as exc:  # pragma: no cover - GPU specific
        log.warning("GPU FAISS unavailable (%s); using CPU", exc)
    return index


#: queries per block of :func:`knn_graph_ivf` (its partial results: block x nprobe x (k+1)
#: scores and rows, 12 bytes each: ~0.5 GB at nprobe 16, k 8)
GRAPH_BLOCK = 262_144


def _ivf_lists(index, vectors: np.ndarray):
    """(ids per list, a function list -> its float32 vectors [size, d]) of an IVF index.
    IVF-flat lists hold the float vectors themselves; for IVF-PQ/OPQ (codes only) the rows
    are read from ``vectors`` (in sorted order, so a memmap is read forwards)."""
    faiss = _faiss()
    ivf = ivf_of(index)
    inv, d = ivf.invlists, int(ivf.d)
    ids = []
    for lst in range(int(ivf.nlist)):
        size = int(inv.list_size(lst))
        ids.append(faiss.rev_swig_ptr(inv.get_ids(lst), size).astype(np.int64) if size
                   else np.zeros(0, np.int64))
    flat = isinstance(ivf, faiss.IndexIVFFlat) and int(ivf.code_size) == 4 * d

    def rows_of(lst: int) -> np.ndarray:
        size = len(ids[lst])
        if flat:
            codes = faiss.rev_swig_ptr(inv.get_codes(lst), size * 4 * d)
            return np.frombuffer(codes, dtype=np.float32).reshape(size, d)
        order = np.argsort(ids[lst])
        out = np.empty((size, vectors.shape[1]), np.float32)
        out[order] = vectors[ids[lst][order]]
        return out

    return ids, rows_of


def knn_graph_ivf(
    index,
    vectors: np.ndarray,
    k: int,
    info: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    block: int = GRAPH_BLOCK,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`knn_graph` of an IVF index (flat, PQ or OPQ): the candidates of an IVF search
    with the index's nprobe, scored list by list as matrix products.

    Searching the vectors one by one through the index streams ``nprobe`` whole lists from
    memory for every query. Here, block by block of queries, each query's ``nprobe`` lists
    come from the coarse quantizer as in a search; then every list is read once per block
    and scored against all the block's queries that probe it by one BLAS product
    (``faiss.knn``: each query's best k+1 in that list), and each query's per-list bests are
    merged. The candidates are the search's own, so the neighbours are those an IVF-flat
    search returns (its recall: the index's ``recall_at_10``); the scores are exact inner
    products (for IVF-PQ the rows are read from ``vectors``, so no PQ approximation).

    Returns (rows int32 [n, k+1], scores float32 [n, k+1], info dict) in :func:`knn_graph`'s
    layout (column 0 the vector itself).
    """
    faiss = _faiss()
    ivf = ivf_of(index)
    n = int(index.ntotal)
    ids, rows_of = _ivf_lists(index, vectors)
    nprobe = int(min(int(ivf.nlist), int((info or {}).get("params", {}).get("nprobe",
                                                                          ivf.nprobe))))
    kk = k + 1
    rows = np.full((n, kk), -1, dtype=np.int32)
    scores = np.full((n, kk), np.nan, dtype=np.float32)
    chain = getattr(index, "chain", None)  # IVF-OPQ: queries are rotated for the quantizer
    for b0 in range(0, n, block):
        qrows = np.arange(b0, min(b0 + block, n))
        q = np.ascontiguousarray(vectors[b0:b0 + len(qrows)], dtype=np.float32)
        qq = q
        for t in range(chain.size() if chain is not None else 0):
            qq = chain.at(t).apply(np.ascontiguousarray(qq))
        _, probe = ivf.quantizer.search(np.ascontiguousarray(qq, dtype=np.float32), nprobe)
        flat = probe.ravel()
        order = np.argsort(flat, kind="stable")
        lists, starts = np.unique(flat[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        part_d = np.full((len(q), nprobe, kk), -np.inf, np.float32)
        part_i = np.full((len(q), nprobe, kk), -1, np.int64)
        for lst, s0, s1 in zip(lists, starts, ends):
            if lst < 0 or len(ids[lst]) == 0:
                continue
            sel = order[s0:s1]
            who, slot = sel // nprobe, sel % nprobe
            m = min(kk, len(ids[lst]))
            d, i = faiss.knn(np.ascontiguousarray(q[who]), np.ascontiguousarray(rows_of(int(lst))),
                             m, metric=faiss.METRIC_INNER_PRODUCT)
            part_d[who, slot, :m] = d
            part_i[who, slot, :m] = np.where(i >= 0, ids[lst][np.maximum(i, 0)], -1)
        part_d = part_d.reshape(len(q), -1)
        part_i = part_i.reshape(len(q), -1)
        part_d[part_i == qrows[:, None]] = -np.inf  # itself: column 0
        best = _topk_order(part_d, part_i, k)
        nb = np.take_along_axis(part_i, best, axis=1)
        sc = np.take_along_axis(part_d, best, axis=1)
        missing = (nb < 0) | ~np.isfinite(sc)
        nb[missing], sc[missing] = -1, np.nan
        rows[qrows, 0] = qrows
        scores[qrows, 0] = np.einsum("ij,ij->i", q, q)
        rows[qrows, 1:] = nb
        scores[qrows, 1:] = sc
        release_pages(vectors)
        if progress is not None:
            progress(int(qrows[-1]) + 1, n)
    return rows, scores, {"method": "list-blocked", "nprobe": nprobe, "block": int(block)}


def knn_graph(
    index,
    vectors: np.ndarray,
    k: int,
    block: int = 16_384,
    progress: Callable[[int, int], None] | None = None,
    info: dict | None = None,
    *,
    search_fn: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
    offset: int = 0,
    ntotal: int | None = None,
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's k nearest other vectors via ``index`` (which holds ``vectors``), through
    :func:`search` when ``info`` (the manifest entry) is given, so IVF-PQ re-ranks. An IVF
    index (``info`` type in :data:`IVF_TYPES`, no ``search_fn``) is searched list by list
    with exact scores instead (:func:`knn_graph_ivf`: the same candidates as the search);
    ``stats``, when given, is updated with how (method, and for IVF the nprobe).

    ``search_fn(queries, k) -> (scores, global rows)`` replaces the index (e.g. the merged
    search of a sharded library, :func:`search_shards`, over ``ntotal`` vectors in all);
    ``vectors`` are then the rows ``offset ..`` of that space whose neighbours are wanted.

    Returns (rows int32 [n, k+1], scores float32 [n, k+1]): column 0 is the vector itself
    (score = its self inner product); missing neighbours are -1 (score NaN).
    """
    n = len(vectors)
    if (search_fn is None and info is not None and info.get("type") in IVF_TYPES
            and index is not None and n == int(index.ntotal) and n > k + 1):
        rows, scores, how = knn_graph_ivf(index, vectors, k, info=info, progress=progress)
        if stats is not None:
            stats.update(how)
        return rows, scores
    if stats is not None:
        stats["method"] = "search" if search_fn is None else "search over the shards"
    rows = np.full((n, k + 1), -1, dtype=np.int32)
    scores = np.full((n, k + 1), np.nan, dtype=np.float32)
    kk = min(k + 1, n if ntotal is None else int(ntotal))
    for start in range(0, n, block):
        q = np.ascontiguousarray(vectors[start : start + block], dtype=np.float32)
        if search_fn is not None:
            d, i = search_fn(q, kk)
        elif info is not None:
            d, i = search(index, info, vectors, q, kk)
        else:
            d, i = index.search(q, kk)
        me = np.arange(offset + start, offset + start + len(q))[:, None]
        drop = (i == me) | (i < 0)
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        nb = np.take_along_axis(i, order, axis=1)
        sc = np.take_along_axis(d, order, axis=1)
        bad = np.take_along_axis(drop, order, axis=1)
        nb[bad] = -1
        sc[bad] = np.nan
        sl = slice(start, start + len(q))
        rows[sl, 0] = me[:, 0]
        scores[sl, 0] = np.einsum("ij,ij->i", q, q)
        rows[sl, 1 : 1 + nb.shape[1]] = nb
        scores[sl, 1 : 1 + nb.shape[1]] = sc
        release_pages(vectors)
        if progress is not None:
            progress(min(start + block, n), n)
    return rows, scores
