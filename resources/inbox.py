"""The CSV inbox as a Dagster resource: where meter exports are dropped."""
from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from bemp_assets.domain.config import BempConfig, SourceConfig
from bemp_assets.domain.inbox import InboxFile, files_of


class CsvInboxResource(ConfigurableResource):
    """``inbox_dir`` is an absolute path ($BEMP_HOME/inbox by default)."""

    inbox_dir: str

    def files(self, source: SourceConfig, config: BempConfig) -> list[InboxFile]:
        return files_of(source, config, Path(self.inbox_dir))
