"""Sensors: they detect new data and request runs; fetching and parsing happen in the runs."""
from .inbox import build_inbox_sensor
from .live import build_live_sensors

__all__ = ["build_inbox_sensor", "build_live_sensors"]
