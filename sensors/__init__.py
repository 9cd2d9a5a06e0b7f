"""Sensors: they detect new data and request runs; fetching and parsing happen in the runs."""
from .hygiene import build_run_hygiene_sensor
from .inbox import build_inbox_sensor
from .live import build_live_sensors

__all__ = ["build_inbox_sensor", "build_live_sensors", "build_run_hygiene_sensor"]
