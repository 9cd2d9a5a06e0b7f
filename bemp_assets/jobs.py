"""Jobs. Partitioned jobs take their partitioning from their assets (no partitions_def argument)."""
from __future__ import annotations

from dagster import AssetKey, AssetSelection, define_asset_job

PIPELINE_JOB = "bemp_pipeline"
LIVE_JOB = "bemp_live"
STATUS_JOB = "bemp_status"
DOWNSTREAM = AssetSelection.groups("clean", "agg")


def build_pipeline_job(live_keys: list[AssetKey]):
    """CSV inbox -> clean -> agg for a day or a range of days (one run per range). The HTTP
    sources are left out, so the CSV pipeline runs without their servers configured."""
    return define_asset_job(
        PIPELINE_JOB,
        selection=AssetSelection.groups("raw") - AssetSelection.assets(*live_keys) | DOWNSTREAM,
        description="Ingest the inbox and rebuild clean, hourly and daily tables for the selected days.",
    )


def build_live_job(live_keys: list[AssetKey]):
    """HTTP sources (gateways, iPanel) -> clean -> agg; needs BEMP_GATEWAY_* and BEMP_IPANEL_*."""
    return define_asset_job(LIVE_JOB, selection=AssetSelection.assets(*live_keys) | DOWNSTREAM,
                            description="Poll the gateway and iPanel sources for the selected days and rebuild clean and agg.")


def build_status_job():
    """The unpartitioned ops snapshots: status board and heat map."""
    return define_asset_job(STATUS_JOB, selection=AssetSelection.groups("ops"),
                            description="Refresh the installation status board and the missing-data heat map.")


BUILDINGS_JOB = "bemp_buildings"


def build_buildings_job():
    """Comfort (PMV/PPD shares) and the thermal demand planner, unpartitioned (docs/buildings.md)."""
    return define_asset_job(BUILDINGS_JOB, selection=AssetSelection.groups("comfort", "planner"),
                            description="Recompute comfort per dwelling, building and district, and re-process the "
                                        "demand planner (clusters, HDD models, forecast) from the building registry.")


KPI_JOB = "bemp_kpi"


def build_kpi_job():
    """The unpartitioned KPI and report layers, ending with the BI snapshot (`bemp report refresh`)."""
    return define_asset_job(KPI_JOB, selection=AssetSelection.groups("kpi", "report"),
                            description="Rebuild the KPI tables and reports, export them, and publish the BI snapshot.")
