import base64
import math

import numpy as np

from mmsa.viz.grid import Card, card_html, cards_from_frame, format_value, grid_html, safe_svg

SVG = "<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'><path d='M0 0L1 1'/></svg>"


def test_names_and_properties_are_escaped():
    evil = "<img src=x onerror=alert(1)>"
    html = card_html(Card(svg=SVG, title=evil, fields={"<b>k</b>": evil}, subtitle=evil))
    assert "<img src=x" not in html and "onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;k&lt;/b&gt;" in html
    # the depiction is an <img> with a data URI (sanitiser-proof, no script can run in it)
    assert '<img class="mmsa-pict"' in html and "data:image/svg+xml;base64," in html
    src = html.split("base64,")[1].split('"')[0]
    assert base64.b64decode(src).decode().startswith("<svg")


def test_unsafe_svg_is_replaced():
    for bad in ("<svg><script>alert(1)</script></svg>", "<svg onload='x()'></svg>",
                "<svg><a href='javascript:x'>a</a></svg>", "not an svg", None, ""):
        assert "no depiction" in safe_svg(bad)
    assert safe_svg(SVG).startswith("<svg")


def test_format_value():
    assert format_value(1.23456) == "1.235"
    assert format_value(2.0) == "2"
    assert format_value(float("nan")) == "\u2013"
    assert format_value(None) == "\u2013"
    assert format_value(np.float32(0.5)) == "0.5"
    assert format_value(np.int64(7)) == "7"
    assert format_value(1.5e-5) == "1.5e-05"
    assert not math.isnan(float(format_value(0.0)))


def test_grid_from_frame_keeps_row_order_and_columns():
    import pandas as pd

    frame = pd.DataFrame({"id": ["a", "b&c"], "score": [0.9, 0.8], "note": ["x", "<y>"]})
    cards = cards_from_frame(frame, [SVG, None], title_col="id", field_cols=["score", "note"])
    html = grid_html(cards, columns=3)
    assert html.index(">a<") < html.index("b&amp;c")
    assert "repeat(3," in html
    assert "&lt;y&gt;" in html and "<y>" not in html
    assert html.count('class="mmsa-card"') == 2


def test_motif_smiles_reads_mcs_smarts():
    from mmsa.chem.motifs import mcs
    from mmsa.viz.motif import motif_smiles

    smarts = "[#6]1:&@[#6]:&@[#6]:&@[#6](:&@[#6]:&@[#6]:&@1)-&!@[#7&!R]-&!@[#6&!R](=&!@[#8&!R])-&!@[#6&!R]"
    assert motif_smiles(smarts) == "CC(=O)Nc1ccccc1"
    assert motif_smiles("") == ""
    assert motif_smiles("not a smarts[[") == "not a smarts[["
    res = mcs(["CC(=O)Nc1ccc(O)cc1", "CC(=O)Nc1ccc(OC)cc1"])
    assert motif_smiles(res.smarts) == "CC(=O)Nc1ccc(O)cc1"
