"""Jobs. The pipeline job's partitioning comes from its assets (no partitions_def argument)."""
from __future__ import annotations

from dagster import AssetSelection, define_asset_job

PIPELINE_JOB = "bemp_pipeline"


def build_pipeline_job():
    """raw -> clean -> agg for a day or a range of days (one run per range)."""
    return define_asset_job(
        PIPELINE_JOB,
        selection=AssetSelection.groups("raw", "clean", "agg"),
        description="Ingest the inbox and rebuild clean and hourly tables for the selected days.",
    )
