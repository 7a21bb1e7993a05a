"""What the app's pages need beyond the store, computed right after a build or append, so a
library's first Map, Memory or Hyperedges visit is as fast as the later ones.

Each step writes into ``lib.cache_dir`` through the function the pages themselves call, so
a page finds the result where it looks for it (and computes it itself when a step was
skipped or failed):

- ``map``: the UMAP coordinates (:func:`mmsa.library.maps.ensure_map`, ``cache/map.npy``);
- ``clusters``: the k-means clusters the Map page colours by
  (:func:`mmsa.library.maps.cluster_labels`, ``cache/clusters-12.npy``);
- ``properties``: the drug-like properties of every molecule
  (:func:`mmsa.library.properties.library_properties`, ``cache/properties.parquet``), for
  libraries up to :data:`PROPERTIES_LIMIT` molecules (about 2.2 ms a molecule, QED most of
  it: some 3 minutes for 100,000, so bigger libraries compute them when a page first filters
  by them; docs/app.md);
- ``slot names``: the memory slots' labels
  (:func:`mmsa.library.slot_names.library_slot_labels`, ``cache/slot-names.json``);
- ``hyperedge motifs``: the shared motif of the most coherent hyperedges
  (:func:`mmsa.library.hyperedges.coherent_with_motifs`, ``cache/motifs.json``).

    >>> from mmsa.library import open_library
    >>> from mmsa.library.views import prepare_views
    >>> report = prepare_views(open_library("drugs"))            # doctest: +SKIP

Called by ``mmsa index build|add|ensure-default`` (``--no-map`` skips it) and by the app's
Libraries page; not by :func:`mmsa.library.build_library` itself, which stays the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mmsa.types import MMSAError

__all__ = ["PROPERTIES_LIMIT", "STEPS", "STEP_UNITS", "ViewsReport", "prepare_views"]

log = logging.getLogger(__name__)

#: the steps, in the order they run
STEPS = ("map", "clusters", "properties", "slot names", "hyperedge motifs")
#: what each step's progress(done, total) counts
STEP_UNITS = {"map": "steps", "clusters": "steps", "properties": "mol", "slot names": "steps",
              "hyperedge motifs": "hyperedges"}
#: drug-like properties are computed at build time up to this library size
PROPERTIES_LIMIT = 20_000
#: hyperedges whose motif is computed ahead (the Hyperedges page's "most coherent" list)
COHERENT_TOP = 20

#: ``progress(done, total)``, as everywhere in mmsa.library
Progress = Callable[[int, "int | None"], None]


@dataclass
class ViewsReport:
    """``seconds``: time per step that ran; ``skipped``: step -> why it did not run (too big,
    not asked for) or failed (the error; the page then computes it on first use)."""

    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def prepare_views(
    lib,
    steps: Sequence[str] | None = None,
    progress: Callable[[str], Progress | None] | None = None,
    map_params=None,
) -> ViewsReport:
    """Compute and cache the derived views of ``lib`` (an open :class:`Library`).

    Args:
        steps: which of :data:`STEPS` to run (default all).
        progress: called once per step with the step's name; returns that step's
            ``progress(done, total)`` callback (or None), e.g. a new progress bar.
        map_params: :class:`mmsa.library.maps.MapParams` (default the page's).
    Returns:
        :class:`ViewsReport`. A step that fails with an :class:`MMSAError` or ``OSError``
        (a read-only folder, a full disk) is logged and recorded in ``skipped``; the later
        steps still run (the library itself is already complete).
    """
    steps = STEPS if steps is None else tuple(steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown view steps {unknown} (known: {', '.join(STEPS)})")
    report = ViewsReport()
    for step in STEPS:
        if step not in steps:
            continue
        if step == "properties" and len(lib) > PROPERTIES_LIMIT:
            report.skipped[step] = (f"{len(lib):,} molecules > {PROPERTIES_LIMIT:,}: computed "
                                    "when a page first needs them")
            continue
        bar = progress(step) if progress is not None else None
        start = time.monotonic()
        try:
            _run(step, lib, bar, map_params)
        except (MMSAError, OSError) as exc:
            log.warning("%s of library %r not computed now (%s); the app computes it on "
                        "first use", step, getattr(lib, "name", "?"), exc)
            report.skipped[step] = str(exc)
            continue
        finally:
            close = getattr(bar, "close", None)
            if callable(close):
                close()
        report.seconds[step] = time.monotonic() - start
    return report


def _run(step: str, lib, bar: Progress | None, map_params) -> None:
    if step == "map":
        from mmsa.library.maps import ensure_map

        ensure_map(lib, map_params, progress=bar)
    elif step == "clusters":
        from mmsa.library.maps import N_CLUSTERS, cluster_labels

        if bar:
            bar(0, 1)
        cluster_labels(lib, N_CLUSTERS)
        if bar:
            bar(1, 1)
    elif step == "properties":
        from mmsa.library.properties import library_properties

        library_properties(lib, progress=bar)
    elif step == "slot names":
        from mmsa.library.slot_names import library_slot_labels

        if bar:
            bar(0, 1)
        library_slot_labels(lib)
        if bar:
            bar(1, 1)
    elif step == "hyperedge motifs":
        from mmsa.library.hyperedges import coherent_with_motifs

        if bar:
            bar(0, None)
        coherent_with_motifs(lib, top=COHERENT_TOP, progress=bar)
