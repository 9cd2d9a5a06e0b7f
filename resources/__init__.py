"""Dagster resources: the DuckDB warehouse, the CSV inbox (and later the HTTP clients)."""
from .inbox import CsvInboxResource
from .warehouse import WarehouseResource

__all__ = ["CsvInboxResource", "WarehouseResource"]
