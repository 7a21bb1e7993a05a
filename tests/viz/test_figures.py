import numpy as np
import pytest

from mmsa.viz.figures import (
    distribution_figure,
    hover_texts,
    is_categorical,
    map_figure,
    slot_weights_figure,
)


def _coords(n=50, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)


def _rows(fig):
    rows = []
    for tr in fig.data:
        if tr.name not in ("highlighted", "query") and tr.customdata is not None:
            rows.extend(np.asarray(tr.customdata).tolist())
    return sorted(rows)


def test_map_figure_plain_numeric_and_categorical_cover_every_row():
    coords = _coords()
    for color in (None, np.linspace(0, 1, 50), np.array(["a", "b"] * 25), np.arange(50) % 7):
        fig = map_figure(coords, color=color, color_name="c")
        assert _rows(fig) == list(range(50))
        assert all(tr.type == "scattergl" for tr in fig.data)
    cat = map_figure(coords, color=np.array(["a", "b"] * 25))
    assert sorted(tr.name for tr in cat.data) == ["a", "b"]
    # customdata of a category trace are the rows of that category
    a = next(tr for tr in cat.data if tr.name == "a")
    assert set(np.asarray(a.customdata).tolist()) == set(range(0, 50, 2))


def test_map_figure_nan_values_get_their_own_trace_and_query_star():
    values = np.linspace(0, 1, 50)
    values[:5] = np.nan
    fig = map_figure(_coords(), color=values, query_xy=np.array([0.5, -0.5]), highlight=np.array([1, 2]))
    names = [tr.name for tr in fig.data]
    assert "no value" in names and "highlighted" in names and "query" in names
    q = fig.data[names.index("query")]
    assert q.x == (0.5,) and q.y == (-0.5,)
    nov = fig.data[names.index("no value")]
    assert sorted(np.asarray(nov.customdata).tolist()) == [0, 1, 2, 3, 4]


def test_map_figure_rejects_wrong_colour_length():
    with pytest.raises(ValueError):
        map_figure(_coords(), color=np.arange(3))


def test_hover_texts_escape_user_strings():
    texts = hover_texts(["<script>x</script>", "ok"], {"note": ["<b>", 1.5]})
    assert "<script>" not in texts[0] and "&lt;script&gt;" in texts[0]
    assert texts[0].startswith("<b>&lt;script") and "note: &lt;b&gt;" in texts[0]
    assert texts[1].endswith("note: 1.5")


def test_is_categorical():
    assert is_categorical(np.array(["a", "b"]))
    assert is_categorical(np.array([1, 2, 3]))
    assert not is_categorical(np.arange(1000))
    assert not is_categorical(np.array([0.1, 0.2]))


def test_slot_weights_and_distribution_figures():
    w = np.array([0.1, 0.6, 0.05, 0.25])
    fig = slot_weights_figure(w, top=2)
    assert list(fig.data[0].x) == ["slot 1", "slot 3"]
    assert np.allclose(fig.data[0].y, [0.6, 0.25])
    d = distribution_figure(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0, np.nan]), name="MW")
    assert [len(t.x) for t in d.data] == [3, 2]
