"""The Map page (logic in explorer/map_page.py)."""

from explorer.map_page import render

render()
