"""Pure domain library: no Dagster imports here, so tests and benchmarks call it directly."""
