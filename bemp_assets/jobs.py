"""Jobs. The pipeline job's partitioning comes from its assets (no partitions_def argument)."""
from __future__ import annotations

from dagster import AssetSelection, define_asset_job

PIPELINE_JOB = "bemp_pipeline"
STATUS_JOB = "bemp_status"


def build_pipeline_job():
    """raw -> clean -> agg for a day or a range of days (one run per range)."""
    return define_asset_job(
        PIPELINE_JOB,
        selection=AssetSelection.groups("raw", "clean", "agg"),
        description="Ingest the inbox and rebuild clean and hourly tables for the selected days.",
    )


def build_status_job():
    """The unpartitioned ops snapshots: status board and heat map."""
    return define_asset_job(STATUS_JOB, selection=AssetSelection.groups("ops"),
                            description="Refresh the installation status board and the missing-data heat map.")
