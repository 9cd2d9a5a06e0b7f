"""Thin Dagster assets, grouped and key-prefixed by warehouse layer (raw, clean, agg)."""
