"""The web dashboard under /ui: server-rendered pages over the same database and tenancy as the API.

Its router lives in ``farm.ui.routes``; this package imports nothing on its
own so that ``farm.api.deps`` can read sessions without a cycle.
"""
