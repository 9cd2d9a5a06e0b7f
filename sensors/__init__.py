"""Sensors: they detect new data and request runs; fetching and parsing happen in the runs."""
from .inbox import build_inbox_sensor

__all__ = ["build_inbox_sensor"]
