"""Schedules."""
from .daily import build_daily_schedule

__all__ = ["build_daily_schedule"]
