"""Plotly figures for the explorer: the library map, slot weights, property distributions.

Inputs are numpy arrays / pandas objects; outputs are ``plotly.graph_objects.Figure``. User
text that reaches hover labels is HTML-escaped (plotly renders a subset of HTML there).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from mmsa.viz.grid import format_value

#: categorical colourings with at most this many categories get one legend entry each
MAX_LEGEND_CATEGORIES = 40
_QUALITATIVE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#393b79 #637939 #8c6d31 #843c39 #7b4173 #3182bd #e6550d #31a354 #756bb1 #636363"
).split()


def hover_texts(names: Sequence[object], extra: dict[str, Sequence[object]] | None = None) -> list[str]:
    """One escaped hover label per point: the name in bold, then ``key: value`` lines."""
    extra = extra or {}
    out = []
    for i, name in enumerate(names):
        lines = [f"<b>{html.escape(format_value(name))}</b>"]
        for key, values in extra.items():
            lines.append(f"{html.escape(str(key))}: {html.escape(format_value(values[i]))}")
        out.append("<br>".join(lines))
    return out


def is_categorical(values: np.ndarray | Sequence[object]) -> bool:
    """True for strings/booleans/objects, or integers with few distinct values."""
    arr = np.asarray(values)
    if arr.dtype.kind in "OUSb":
        return True
    if arr.dtype.kind in "iu":
        return len(np.unique(arr)) <= MAX_LEGEND_CATEGORIES
    return False


def map_figure(
    coords: np.ndarray,
    *,
    color: np.ndarray | Sequence[object] | None = None,
    color_name: str = "",
    hover: Sequence[str] | None = None,
    query_xy: np.ndarray | None = None,
    query_label: str = "query",
    highlight: np.ndarray | None = None,
    point_size: float | None = None,
    height: int = 600,
    keep: np.ndarray | None = None,
) -> go.Figure:
    """WebGL scatter of a library map.

    Args:
        coords: float [n, 2] map coordinates.
        color: [n] values to colour by (numeric -> colour scale; categorical -> one legend entry
            per category up to ``MAX_LEGEND_CATEGORIES``, else a colour scale over codes).
        hover: [n] hover labels (already escaped, e.g. from :func:`hover_texts`).
        query_xy: float [2], where the search query lies; drawn as a star.
        highlight: int [h] row indices to outline (e.g. a memory slot's members).
        keep: bool [n]: points that pass a filter; the others are drawn as faint grey dots
            without hover labels (and cannot be selected as rows: no customdata).

    Every point carries its row index as ``customdata`` so selections map back to rows
    whatever the trace layout.
    """
    coords = np.asarray(coords, dtype=np.float32)
    n = len(coords)
    rows = np.arange(n)
    size = point_size or (6 if n <= 5_000 else 4 if n <= 50_000 else 3)
    fig = go.Figure()
    hover_arr = np.asarray(hover, dtype=object) if hover is not None else None
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if len(keep) != n:
            raise ValueError(f"{len(keep)} filter flags for {n} points")
        out = rows[~keep]
        if len(out):
            fig.add_trace(go.Scattergl(
                x=coords[out, 0], y=coords[out, 1], mode="markers", name="filtered out",
                hoverinfo="skip", showlegend=True,
                marker=dict(size=max(2, size - 2), color="#dddddd", opacity=0.5)))
        rows = rows[keep]

    def add(idx: np.ndarray, name: str, marker: dict, showlegend: bool) -> None:
        fig.add_trace(
            go.Scattergl(
                x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=name,
                customdata=idx, marker=marker, showlegend=showlegend,
                hovertext=None if hover_arr is None else hover_arr[idx].tolist(),
                hoverinfo="text" if hover_arr is not None else "x+y",
            )
        )

    if color is None:
        add(rows, "molecules", dict(size=size, color="#4c78a8", opacity=0.7), False)
    else:
        values = np.asarray(color)
        if len(values) != n:
            raise ValueError(f"{len(values)} colour values for {n} points")
        if is_categorical(values):
            cats, codes = np.unique(values.astype(str), return_inverse=True)
            codes = codes[rows]
            if len(cats) <= MAX_LEGEND_CATEGORIES:
                for c, cat in enumerate(cats):
                    idx = rows[codes == c]
                    add(idx, html.escape(cat), dict(size=size, opacity=0.75,
                        color=_QUALITATIVE[c % len(_QUALITATIVE)]), True)
            else:
                add(rows, color_name, dict(size=size, opacity=0.75, color=codes,
                    colorscale="Turbo", showscale=False), False)
        else:
            num = values.astype(np.float64)[rows]
            ok = np.isfinite(num)
            if (~ok).any():
                add(rows[~ok], "no value", dict(size=size, color="#cccccc", opacity=0.5), True)
            add(rows[ok], color_name, dict(
                size=size, opacity=0.8, color=num[ok], colorscale="Viridis", showscale=True,
                colorbar=dict(title=dict(text=html.escape(color_name)))), False)

    if highlight is not None and len(highlight):
        h = np.asarray(highlight, dtype=np.int64)
        fig.add_trace(go.Scattergl(
            x=coords[h, 0], y=coords[h, 1], mode="markers", name="highlighted",
            customdata=h, hoverinfo="skip",
            marker=dict(size=size + 4, color="rgba(0,0,0,0)", line=dict(color="#d62728", width=1.5)),
        ))
    if query_xy is not None:
        q = np.asarray(query_xy, dtype=np.float32).reshape(2)
        fig.add_trace(go.Scatter(
            x=[float(q[0])], y=[float(q[1])], mode="markers", name="query",
            hovertext=[html.escape(query_label)], hoverinfo="text",
            marker=dict(symbol="star", size=18, color="#e45756", line=dict(color="black", width=1)),
        ))
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), dragmode="lasso",
        xaxis=dict(showticklabels=False, title="UMAP 1", zeroline=False),
        yaxis=dict(showticklabels=False, title="UMAP 2", zeroline=False),
        legend=dict(itemsizing="constant", orientation="h", yanchor="top", y=-0.02,
                    xanchor="left", x=0),
        plot_bgcolor="white",
    )
    return fig


def slot_weights_figure(weights: np.ndarray, top: int | None = None, title: str = "") -> go.Figure:
    """Bar chart of one molecule's memory-slot weights (float [num_slots], sums to 1)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    slots = np.arange(len(w))
    if top is not None and top < len(w):
        keep = np.sort(np.argsort(-w)[:top])
        slots, w = slots[keep], w[keep]
    fig = go.Figure(go.Bar(x=[f"slot {s}" for s in slots], y=w, marker_color="#4c78a8",
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      title=html.escape(title) if title else None, yaxis_title="weight")
    return fig


def histogram_bins(*groups: np.ndarray, max_bins: int = 60) -> tuple[float, float, float] | None:
    """Shared bins ``(start, end, size)`` spanning exactly the finite values of ``groups``
    (None when there are none): both histograms of a comparison use the same bars, and the
    axis ends where the data do. Whole-number data get whole-number bar widths."""
    vals = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in groups if g is not None])
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return None
    lo, hi = float(vals.min()), float(vals.max())
    if hi == lo:
        return lo - 0.5, hi + 0.5, 1.0
    n = len(np.histogram_bin_edges(vals, bins="auto")) - 1
    n = int(min(max(n, 5), max_bins))
    size = (hi - lo) / n
    if np.all(vals == np.round(vals)):  # counts, years: bars of whole units, centred on them
        size = max(1.0, float(np.ceil(size)))
        return lo - 0.5, hi + 0.5, size
    return lo, hi + size * 1e-9, size


def distribution_figure(
    values: np.ndarray, reference: np.ndarray | None = None, name: str = "",
    group: str = "slot", reference_group: str = "library",
) -> go.Figure:
    """Overlaid normalised histograms of a property for a group and (optionally) the library,
    on shared bins; the x axis spans the data (not plotly's rounded bin edges)."""
    fig = go.Figure()
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    ref = None
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref[np.isfinite(ref)]
    bins = histogram_bins(vals, ref)
    xbins = None if bins is None else dict(start=bins[0], end=bins[1], size=bins[2])
    if ref is not None:
        fig.add_trace(go.Histogram(x=ref, name=reference_group, xbins=xbins, autobinx=False,
                                   histnorm="probability density", opacity=0.5))
    fig.add_trace(go.Histogram(x=vals, name=group, xbins=xbins, autobinx=False,
                               histnorm="probability density", opacity=0.7))
    fig.update_layout(barmode="overlay", height=280, margin=dict(l=10, r=10, t=30, b=10),
                      title=html.escape(name), showlegend=True)
    if bins is not None:
        fig.update_xaxes(range=[bins[0], bins[1]])
    return fig
