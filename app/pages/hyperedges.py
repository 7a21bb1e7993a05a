"""The Hyperedges page (logic in explorer/hyperedges.py)."""

from explorer.hyperedges import render

render()
