"""Schedules."""
from .daily import build_daily_schedule
from .live import build_live_repoll_schedule

__all__ = ["build_daily_schedule", "build_live_repoll_schedule"]
