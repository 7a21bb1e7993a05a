"""HTML grids of molecule cards (depiction + escaped name + escaped properties)."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# An SVG we embed must come from RDKit's drawer: a single <svg> element, no scripts, no
# event handlers, no external references. Anything else is replaced by a placeholder.
_SVG_FORBIDDEN = re.compile(
    r"<\s*script|\son\w+\s*=|javascript:|<\s*foreignObject|<\s*image|href\s*=", re.I
)


@dataclass
class Card:
    """One cell of a grid.

    ``svg`` is a depiction produced by our own drawer (mmsa.chem.depict); ``title`` and every
    key and value of ``fields`` may be user-provided text and are escaped when rendered.
    ``accent``: a ``#rrggbb`` colour for the card's top border (e.g. an activity value on a
    colour scale, see :func:`value_colours`); anything else is ignored.
    """

    svg: str | None
    title: str
    fields: Mapping[str, object] = field(default_factory=dict)
    subtitle: str | None = None
    accent: str | None = None


_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
#: Viridis at 9 stops (low -> high)
_VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962",
            "#addc30", "#fde725")


def value_colours(values: Sequence[object]) -> list[str | None]:
    """A Viridis colour per value, scaled from the smallest to the largest finite one
    (None for missing or non-numeric values)."""
    nums = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        nums.append(x)
    finite = [x for x in nums if math.isfinite(x)]
    if not finite:
        return [None] * len(nums)
    lo, hi = min(finite), max(finite)
    out: list[str | None] = []
    for x in nums:
        if not math.isfinite(x):
            out.append(None)
            continue
        t = 0.5 if hi == lo else (x - lo) / (hi - lo)
        out.append(_VIRIDIS[min(len(_VIRIDIS) - 1, int(round(t * (len(_VIRIDIS) - 1))))])
    return out


def format_value(value: object, digits: int = 3) -> str:
    """Readable text for a property value: floats rounded, NaN/None as an en dash."""
    if value is None:
        return "\u2013"
    if isinstance(value, float):
        if math.isnan(value):
            return "\u2013"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.floating):
            return format_value(float(value), digits)
        if isinstance(value, np.integer):
            return str(int(value))
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def svg_img(svg: str | None, alt: str = "structure") -> str:
    """An ``<img>`` tag showing ``svg`` through a base64 data URI (or a placeholder).

    Browsers never run scripts inside an SVG loaded as an image, and HTML sanitisers (e.g.
    Streamlit's ``st.html``, which strips inline ``<svg>``) keep ``<img>`` with data URIs.
    """
    markup = safe_svg(svg)
    if not markup.startswith("<svg"):
        return markup
    data = base64.b64encode(markup.encode("utf-8")).decode("ascii")
    return f'<img class="mmsa-pict" alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}"/>'


def safe_svg(svg: str | None) -> str:
    """``svg`` if it is a plain RDKit-style SVG, else an escaped placeholder box."""
    if not svg:
        return '<div class="mmsa-nodepict">no depiction</div>'
    start = svg.find("<svg")
    if start < 0 or _SVG_FORBIDDEN.search(svg):
        return '<div class="mmsa-nodepict">no depiction</div>'
    return svg[start:]  # drop any XML prolog


_CSS = """
<style>
.mmsa-grid{display:grid;width:100%;box-sizing:border-box;gap:10px;font-family:sans-serif;}
.mmsa-card{border:1px solid #ddd;border-radius:8px;padding:6px;background:#fff;color:#222;overflow:hidden;}
.mmsa-card img.mmsa-pict{width:100%;height:auto;display:block;}
.mmsa-title{font-weight:600;font-size:0.9em;margin-top:4px;overflow-wrap:anywhere;}
.mmsa-sub{font-size:0.75em;color:#666;overflow-wrap:anywhere;}
.mmsa-fields{font-size:0.78em;margin:2px 0 0 0;border-collapse:collapse;width:100%;table-layout:fixed;}
.mmsa-fields td{padding:0 4px 0 0;vertical-align:top;overflow-wrap:anywhere;}
.mmsa-fields td.k{color:#666;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;width:42%;}
.mmsa-nodepict{height:120px;display:flex;align-items:center;justify-content:center;color:#999;}
</style>
"""


def card_html(card: Card) -> str:
    """One card as an HTML fragment; all text escaped."""
    rows = "".join(
        f'<tr><td class="k" title="{html.escape(str(k))}">{html.escape(str(k))}</td>'
        f"<td>{html.escape(format_value(v))}</td></tr>"
        for k, v in card.fields.items()
    )
    sub = f'<div class="mmsa-sub">{html.escape(card.subtitle)}</div>' if card.subtitle else ""
    accent = ""
    if card.accent and _HEX.match(card.accent):
        accent = f' style="border-top:6px solid {card.accent}"'
    return (
        f'<div class="mmsa-card"{accent}>'
        f"{svg_img(card.svg, alt=card.title)}"
        f'<div class="mmsa-title">{html.escape(card.title)}</div>{sub}'
        f'<table class="mmsa-fields">{rows}</table>'
        "</div>"
    )


def grid_html(cards: Iterable[Card], columns: int = 4) -> str:
    """A responsive grid of ``cards`` with its own CSS, ready for ``st.html`` or a file.

    The column count is the grid's own inline style: the CSS rules are shared by every grid
    of the page, so a 6-column grid drawn later must not turn a 1-column panel into six
    columns a letter wide."""
    columns = max(1, int(columns))
    body = "".join(card_html(c) for c in cards)
    style = f"grid-template-columns:repeat({columns},minmax(0,1fr))"
    return _CSS + f'<div class="mmsa-grid" style="{style}">{body}</div>'


def cards_from_frame(
    frame,
    svgs: Sequence[str | None],
    *,
    title_col: str = "id",
    subtitle_col: str | None = None,
    field_cols: Sequence[str] = (),
) -> list[Card]:
    """Cards for the rows of a DataFrame ``frame`` (one SVG per row, in row order)."""
    if len(svgs) != len(frame):
        raise ValueError(f"{len(svgs)} depictions for {len(frame)} rows")
    cards = []
    for svg, (_, row) in zip(svgs, frame.iterrows()):
        fields = {c: row[c] for c in field_cols if c in row.index}
        sub = row[subtitle_col] if subtitle_col and subtitle_col in row.index else None
        cards.append(
            Card(svg=svg, title=format_value(row.get(title_col, "")), fields=fields,
                 subtitle=None if sub is None else format_value(sub))
        )
    return cards
