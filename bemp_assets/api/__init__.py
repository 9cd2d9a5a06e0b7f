"""The BEMP HTTP API (docs/api.md): push readings, read layers, models and forecasts.

The modules imported by the Dagster code location (store, registry, audit) need no web
framework; only ``app`` imports FastAPI.
"""
