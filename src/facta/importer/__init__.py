"""Importing files into the log: CSV, JSON Lines and Parquet, batched, atomic, resumable."""

from facta.importer.job import (
    DEFAULT_BATCH_SIZE,
    FileImport,
    ImportAborted,
    ImportProgress,
    ImportSettings,
    ImportSummary,
    OnError,
    batch_key,
    import_file,
    import_key,
)
from facta.importer.records import Format
from facta.importer.sources import FORMATS, detect_format, file_sha256
from facta.importer.template import RowError, StreamTemplate

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FORMATS",
    "FileImport",
    "Format",
    "ImportAborted",
    "ImportProgress",
    "ImportSettings",
    "ImportSummary",
    "OnError",
    "RowError",
    "StreamTemplate",
    "batch_key",
    "detect_format",
    "file_sha256",
    "import_file",
    "import_key",
]
