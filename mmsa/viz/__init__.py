"""Pure presentation helpers for the explorer: HTML molecule grids, plotly figures, exports.

Everything here takes plain data (numpy arrays, pandas DataFrames, SVG strings) and returns
strings, bytes or plotly figures; nothing reads libraries or runs the model. Every string that
may come from a user's file (names, ids, property values) is HTML-escaped before it reaches
HTML. Import the submodules you need: ``mmsa.viz.grid``, ``mmsa.viz.figures``,
``mmsa.viz.export`` (plotly and RDKit are imported by those, not here).
"""
