"""BEMP: the energy data platform on Dagster.

`bemp_assets.domain` is the pure library (parsing, time handling, warehouse SQL) that knows
nothing of Dagster; `bemp_assets.assets` holds the thin assets that call it.
"""
