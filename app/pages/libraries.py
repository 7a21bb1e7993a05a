"""The Libraries page (logic in explorer/libraries.py)."""

from explorer.libraries import render

render()
