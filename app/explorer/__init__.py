"""Page logic of the MMSA Explorer app (one module per page, plus `common`).

Every page module has ``render()`` (called by its script in app/pages/) and small pure helpers
that tests call directly. Pages only call mmsa functions: no model or index logic lives here.
"""
