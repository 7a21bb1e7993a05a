"""Exports of results and maps: CSV, SDF (properties kept) and self-contained HTML."""

from __future__ import annotations

import html
import io
import json
import logging
import math
from collections.abc import Sequence

import pandas as pd

from mmsa.viz.grid import safe_svg

logger = logging.getLogger(__name__)


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV (no index column)."""
    return frame.to_csv(index=False).encode("utf-8")


def _sd_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value)
    # an SD data field ends at a blank line; keep each value on its own lines without blanks
    return "\n".join(line for line in text.splitlines() if line.strip()) or None


def to_sdf_bytes(
    frame: pd.DataFrame, smiles_col: str = "smiles", id_col: str | None = "id",
    skip: Sequence[str] = (),
) -> bytes:
    """An SD file of the frame: one record per row with a 2D layout, the id as title and every
    other column as a data field. Rows whose SMILES does not parse are left out (and logged).
    """
    from rdkit import Chem
    from rdkit.Chem import rdDepictor

    if smiles_col not in frame.columns:
        raise ValueError(f"no column {smiles_col!r} to export")
    props = [c for c in frame.columns if c not in (smiles_col, *skip)]
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    for i, row in enumerate(frame.itertuples(index=False)):
        rec = dict(zip(frame.columns, row))
        mol = Chem.MolFromSmiles(str(rec[smiles_col]))
        if mol is None:
            logger.warning("row %d: SMILES %r not exported (does not parse)", i, rec[smiles_col])
            continue
        rdDepictor.Compute2DCoords(mol)
        if id_col and id_col in rec and rec[id_col] is not None:
            mol.SetProp("_Name", str(rec[id_col]).splitlines()[0] if str(rec[id_col]) else "")
        mol.SetProp("SMILES", str(rec[smiles_col]))
        for key in props:
            value = _sd_value(rec[key])
            if value is not None:
                mol.SetProp(str(key).replace(">", "").replace("<", "") or "field", value)
        writer.write(mol)
    writer.close()
    return buffer.getvalue().encode("utf-8")


_HOVER_JS = """
(function(){
  var gd = document.getElementById('{plot_id}');
  var pics = JSON.parse(document.getElementById('mmsa-pics').textContent);
  var box = document.getElementById('mmsa-hover');
  gd.on('plotly_hover', function(ev){
    var p = ev.points[0]; var row = p.customdata;
    var svg = (row !== undefined && pics[row]) ? pics[row] : null;
    if (!svg) { box.style.display = 'none'; return; }
    box.innerHTML = svg; box.style.display = 'block';
  });
  gd.on('plotly_unhover', function(){ box.style.display = 'none'; });
})();
"""


def map_html(fig, title: str = "MMSA map", pictures: Sequence[str | None] | None = None) -> str:
    """A self-contained HTML page (plotly.js inlined, no network) of the map figure.

    ``pictures`` (optional) holds one SVG per row index (the ``customdata`` of the points);
    hovering a point then shows its structure in a corner box.
    """
    div_id = "mmsa-map"
    post = None
    extra = ""
    if pictures is not None:
        pics = [safe_svg(p) if p else None for p in pictures]
        # JSON inside <script>: neutralise "</" so no content can close the tag
        payload = json.dumps(pics).replace("</", "<\\/")
        extra = (
            f'<script type="application/json" id="mmsa-pics">{payload}</script>'
            '<div id="mmsa-hover" style="display:none;position:fixed;top:10px;right:10px;'
            'width:260px;background:white;border:1px solid #999;border-radius:6px;'
            'padding:4px;z-index:10"></div>'
        )
        post = _HOVER_JS.replace("{plot_id}", div_id)
    body = fig.to_html(include_plotlyjs=True, full_html=False, div_id=div_id, post_script=post)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h3 style='font-family:sans-serif'>{html.escape(title)}</h3>{extra}{body}</body></html>"
    )
