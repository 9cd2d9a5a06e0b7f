"""Client of the IoT gateway platform (or `bemp serve gateway`): measurements and gateways.

Records are returned as served: dicts with time (ISO 8601 UTC), sn, channel, device, medium,
unit, value. Validation, dedup and rejects are the asset's job, so a malformed record reaches
it and can be written to raw.rejects with a reason.
"""
from __future__ import annotations

from datetime import datetime

from . import wire
from .http import HttpSourceResource


class GatewayClient(HttpSourceResource):
    """Configure with ``base_url=EnvVar("BEMP_GATEWAY_URL"), token=EnvVar("BEMP_GATEWAY_TOKEN")``."""

    PROBED = {"measurements": (wire.GATEWAY_MEASUREMENTS, "time")}

    def measurements(self, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """Every measurement with since <= time < until (all pages)."""
        return self.fetch_all(wire.GATEWAY_MEASUREMENTS, since, until)

    def gateways(self) -> list[dict]:
        """The gateways the platform knows: sn and channels (channel, device, medium, unit)."""
        return self.fetch_all(wire.GATEWAY_GATEWAYS)

    def latest_time(self) -> datetime | None:
        """Time of the newest measurement served, or None: one request, for the sensor."""
        return self.last_time_in("measurements")

    def earliest_time(self) -> datetime | None:
        """Time of the oldest measurement served, or None: where a first poll starts."""
        return self.first_time_after("measurements", None)
