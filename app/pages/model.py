"""The Model page (logic in explorer/model_page.py)."""

from explorer.model_page import render

render()
