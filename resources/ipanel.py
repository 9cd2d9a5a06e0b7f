"""Client of DATIK iPanel (or `bemp serve ipanel`): trips, charger status and charges.

Records are returned as served, with iPanel's field names (docs/sources.md). The wire details
are an assumed contract kept in resources/wire.py.
"""
from __future__ import annotations

from datetime import datetime

from . import wire
from .http import HttpSourceResource


class IPanelClient(HttpSourceResource):
    """Configure with ``base_url=EnvVar("BEMP_IPANEL_URL"), token=EnvVar("BEMP_IPANEL_TOKEN")``."""

    # what the polling sensor watches; charger status snapshots come along in each run's window
    PROBED = {"trips": (wire.IPANEL_TRIPS, "date"), "charges": (wire.IPANEL_CHARGES, "date")}

    def trips(self, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """Vehicle trips that started in [since, until) (field ``date``), all pages."""
        return self.fetch_all(wire.IPANEL_TRIPS, since, until)

    def charges(self, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """Per charger and depot day: charges whose ``date`` (start of the day) is in [since, until)."""
        return self.fetch_all(wire.IPANEL_CHARGES, since, until)

    def charger_status(self) -> list[dict]:
        """The current snapshot, one record per charger (append it to a history to keep it)."""
        return self.fetch_all(wire.IPANEL_CHARGER_STATUS)

    def charger_status_history(self, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """Snapshots with ``lastUpdate`` in [since, until). Assumed endpoint: see docs/sources.md."""
        return self.fetch_all(wire.IPANEL_CHARGER_STATUS_HISTORY, since, until)

    def latest_trip_time(self) -> datetime | None:
        """Start of the newest trip served, or None: one request, for the sensor."""
        return self.last_time_in("trips")

    def latest_charge_time(self) -> datetime | None:
        """``date`` of the newest charges record, or None: one request, for the sensor."""
        return self.last_time_in("charges")

    def earliest_time(self) -> datetime | None:
        """Start of the oldest trip or charges record, or None: where a first poll starts."""
        return min((t for t in (self.first_time_after(s, None) for s in self.PROBED) if t), default=None)
