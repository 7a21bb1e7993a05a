"""The Search page (logic in explorer/search.py)."""

from explorer.search import render

render()
