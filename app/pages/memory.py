"""The Memory page (logic in explorer/memory.py)."""

from explorer.memory import render

render()
