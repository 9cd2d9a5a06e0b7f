"""Dagster resources: the DuckDB warehouse, the CSV inbox and the HTTP source clients."""
from .gateway import GatewayClient
from .inbox import CsvInboxResource
from .ipanel import IPanelClient
from .warehouse import WarehouseResource

__all__ = ["CsvInboxResource", "GatewayClient", "IPanelClient", "WarehouseResource"]
