"""The Activity cliffs page (logic in explorer/cliffs_page.py)."""

from explorer.cliffs_page import render

render()
