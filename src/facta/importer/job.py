"""A resumable import: a file becomes events in batches, each batch one atomic append.

Batch ``i`` of a file is one ``append_many`` (many streams) with the idempotency key
``import:<sha256 of the file>:<batch size>:<i>``. Its outcome record holds what the batch did: the
number of records, of events written, and the rejected records with their line and reason. So
the log alone says which batches are done: a rerun skips them (their keys are recorded) and
carries on. The reject file is derived from those outcomes, rewritten from the start of the file
on every run, so a resumed run never duplicates a line of it. The batch size is recorded once per
file (key ``import:<sha256>``); resuming with another batch size would cut the file differently,
so it is refused.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from facta.importer.records import RawBatch, Records, Source
from facta.importer.rejects import RejectFile
from facta.importer.sources import (
    default_rejects_path,
    detect_format,
    file_sha256,
    open_source,
)
from facta.importer.template import RowError, StreamTemplate
from facta.log import (
    IdempotencyKeyReused,
    InvalidInput,
    LogConfig,
    NewEvent,
    SqliteLog,
    StreamAppend,
)
from facta.log.event import check_event_type
from facta.log.request import prepare_append

OnError = Literal["reject", "abort"]
DEFAULT_BATCH_SIZE = 5_000

_json = msgspec.json.Encoder()


class ImportAborted(InvalidInput):
    """``on_error="abort"`` met a bad record: nothing of its batch was written."""

    def __init__(self, message: str, line: int, reason: str) -> None:
        super().__init__(message)
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImportSettings:
    """How to turn a file's records into events."""

    event_type: str
    stream: str
    batch_size: int = DEFAULT_BATCH_SIZE
    on_error: OnError = "reject"
    rejects: Path | None = None
    format: str | None = None


@dataclass(slots=True)
class ImportProgress:
    """Counters of a running import, handed to the progress callback after every batch."""

    total: int
    done: int = 0
    processed: int = 0  # records of batches this run appended (not skipped)
    written: int = 0
    events: int = 0
    rejected: int = 0
    batches: int = 0
    skipped_batches: int = 0
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    file: str
    sha256: str
    format: str
    records: int
    processed: int
    events: int
    written: int
    rejected: int
    batches: int
    skipped_batches: int
    rejects_file: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "format": self.format,
            "records": self.records,
            "processed": self.processed,
            "events": self.events,
            "written": self.written,
            "rejected": self.rejected,
            "batches": self.batches,
            "skipped_batches": self.skipped_batches,
            "rejects_file": self.rejects_file,
            "seconds": round(self.seconds, 3),
            "records_per_second": (
                round(self.processed / self.seconds) if self.seconds and self.processed else None
            ),
        }


def import_key(sha256: str) -> str:
    return f"import:{sha256}"


def batch_key(sha256: str, batch_size: int, index: int) -> str:
    return f"import:{sha256}:{batch_size}:{index}"


def import_file(
    log: SqliteLog,
    path: str | Path,
    settings: ImportSettings,
    *,
    on_start: Callable[[ImportProgress], None] | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> ImportSummary:
    """Import ``path`` into ``log``; safe to rerun after a crash (done batches are skipped)."""
    return FileImport(path, settings).run(log, on_start=on_start, on_progress=on_progress)


class FileImport:
    """One file's import, checked before the log is touched: its settings, format, columns.

    Everything that can refuse the import without the log (an unknown format, a template that
    names a missing column, a bad event type) raises here, so nothing is written.
    """

    log: SqliteLog

    def __init__(
        self, path: str | Path, settings: ImportSettings, config: LogConfig | None = None
    ) -> None:
        file = Path(path)
        size = settings.batch_size
        limit = (config or LogConfig()).max_append_events
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= limit:
            raise InvalidInput(f"batch size must be between 1 and {limit}, found {size!r}")
        if settings.on_error not in ("reject", "abort"):
            raise InvalidInput(f"on_error must be 'reject' or 'abort', found {settings.on_error!r}")
        check_event_type(settings.event_type)
        self.file = file
        self.settings = settings
        self.template = StreamTemplate.parse(settings.stream)
        self.format = detect_format(file, settings.format)
        self.source: Source = open_source(file, self.format)
        self.template.check_columns(self.source.columns)
        self.sha256 = file_sha256(file)
        self.rejects = RejectFile(settings.rejects or default_rejects_path(file))
        self._meta_import = self.sha256[:16]

    def run(
        self,
        log: SqliteLog,
        *,
        on_start: Callable[[ImportProgress], None] | None = None,
        on_progress: Callable[[ImportProgress], None] | None = None,
    ) -> ImportSummary:
        """Import into ``log``; safe to rerun after a crash (committed batches are skipped)."""
        return asyncio.run(self.run_async(log, on_start=on_start, on_progress=on_progress))

    async def run_async(
        self,
        log: SqliteLog,
        *,
        on_start: Callable[[ImportProgress], None] | None = None,
        on_progress: Callable[[ImportProgress], None] | None = None,
    ) -> ImportSummary:
        """:meth:`run` for a caller already inside an event loop."""
        limit = log.config.max_append_events
        if self.settings.batch_size > limit:
            raise InvalidInput(
                f"batch size {self.settings.batch_size} exceeds the log's max_append_events={limit}"
            )
        self.log = log
        self._record_import()
        progress = ImportProgress(self.source.total)
        if on_start is not None:
            on_start(progress)
        self.rejects.restart()
        try:
            await self._run_batches(progress, on_progress)
        finally:
            self.rejects.close()
        return ImportSummary(
            file=str(self.file),
            sha256=self.sha256,
            format=self.format,
            records=progress.done,
            processed=progress.processed,
            events=progress.events,
            written=progress.written,
            rejected=progress.rejected,
            batches=progress.batches,
            skipped_batches=progress.skipped_batches,
            rejects_file=str(self.rejects.path) if self.rejects.written else None,
            seconds=time.perf_counter() - progress.started,
        )

    def _record_import(self) -> None:
        """Record this file's batch size once; refuse to resume it with other settings."""
        wanted = {
            "batch_size": self.settings.batch_size,
            "type": self.settings.event_type,
            "stream": self.template.text,
            "format": self.format,
            "records": self.source.total,
        }
        key = import_key(self.sha256)
        found = self.log.lookup_sync(key)
        if found is None:
            try:
                self.log.append_many_sync([], key=key, outcome=wanted)
                return
            except IdempotencyKeyReused:
                found = self.log.lookup_sync(key)
        recorded = found.outcome if found is not None else None
        if not isinstance(recorded, dict):
            raise InvalidInput(f"key {key!r} is used by something other than an import")
        for name, flag in (
            ("batch_size", "--batch-size"),
            ("type", "--type"),
            ("stream", "--stream"),
            ("format", "--format"),
        ):
            if recorded.get(name) != wanted[name]:
                raise InvalidInput(
                    f"{str(self.file)!r} (sha256 {self.sha256[:12]}) was already imported with "
                    f"{flag} {recorded.get(name)!r}; resuming it needs the same setting, "
                    f"found {wanted[name]!r}"
                )

    async def _run_batches(
        self, progress: ImportProgress, on_progress: Callable[[ImportProgress], None] | None
    ) -> None:
        """Read and encode batch i+1 while the log's writer thread commits batch i.

        A batch is submitted only after the one before it committed, so the committed batches
        are always a prefix of the file, and the reject file follows that prefix.
        """

        def finish(done: _Done) -> None:
            self._finish(done, progress)
            if on_progress is not None:
                on_progress(progress)

        inflight: asyncio.Task[_Done] | None = None
        try:
            for raw in self.source.batches(self.settings.batch_size):
                step = self._plan(raw)
                if inflight is not None:
                    task, inflight = inflight, None
                    finish(await task)
                if isinstance(step, _Done):
                    finish(step)
                else:
                    inflight = asyncio.create_task(step())
                    # Let it encode and queue its append now; the writer thread commits it
                    # while this loop reads the next batch.
                    await asyncio.sleep(0)
            if inflight is not None:
                task, inflight = inflight, None
                finish(await task)
        finally:
            if inflight is not None:  # planning failed: let the queued batch land, then report
                finish(await inflight)

    def _plan(self, raw: RawBatch) -> _Done | Callable[[], Coroutine[Any, Any, _Done]]:
        """A batch committed by an earlier run, or the work that commits it."""
        key = batch_key(self.sha256, self.settings.batch_size, raw.index)
        found = self.log.lookup_sync(key)
        if found is not None:
            return _Done(raw, found.outcome, skipped=True)
        rejects: list[dict[str, Any]] = []
        groups = self._events(raw, raw.load(), rejects)
        return functools.partial(self._commit, key, raw, groups, rejects)

    def _finish(self, done: _Done, progress: ImportProgress) -> None:
        outcome = done.outcome
        if not isinstance(outcome, dict):
            raise InvalidInput(f"batch {done.raw.index}: its key holds no import outcome")
        rejects = outcome.get("rejects") or []
        self.rejects.write(rejects)
        events = int(outcome.get("events", 0))
        progress.done += done.raw.size
        progress.events += events
        progress.rejected += len(rejects)
        progress.batches += 1
        if done.skipped:
            progress.skipped_batches += 1
        else:
            progress.written += events
            progress.processed += done.raw.size

    async def _commit(
        self, key: str, raw: RawBatch, groups: _Groups, rejects: list[dict[str, Any]]
    ) -> _Done:
        outcome = _outcome(raw.size, groups, rejects)
        try:
            result = await self.log.append_many(_entries(groups), key=key, outcome=outcome)
        except IdempotencyKeyReused:
            raise InvalidInput(
                f"batch {raw.index} of {str(self.file)!r} was already imported with different "
                "content (was the file imported by another facta version?)"
            ) from None
        except InvalidInput as exc:
            groups = self._reject_invalid(raw, groups, rejects, exc)
            outcome = _outcome(raw.size, groups, rejects)
            try:
                result = await self.log.append_many(_entries(groups), key=key, outcome=outcome)
            except InvalidInput as again:
                raise InvalidInput(
                    f"batch {raw.index} (lines {raw.first_line}-{raw.last_line}) cannot be "
                    f"appended: {again}; try a smaller --batch-size"
                ) from None
        # A replay means another importer committed this batch first: its outcome is the truth.
        return _Done(raw, result.outcome, skipped=result.replayed)

    def _events(self, raw: RawBatch, records: Records, rejects: list[dict[str, Any]]) -> _Groups:
        """The batch's events by stream (streams in order of first record, events in file
        order); bad records go to ``rejects``."""
        event_type = self.settings.event_type
        render = self.template.compile()
        meta_import = self._meta_import
        problems = records.problems
        groups: _Groups = {}
        for position, (line, row) in enumerate(zip(records.lines, records.rows, strict=True)):
            if row is None:
                reason, record = problems[position]
                self._bad(raw, line, reason, record, rejects)
                continue
            try:
                stream = render(row)
            except RowError as exc:
                self._bad(raw, line, str(exc), row, rejects)
                continue
            metadata = {"import": meta_import, "line": line}
            event = NewEvent(type=event_type, data=row, metadata=metadata)
            found = groups.get(stream)
            if found is None:
                groups[stream] = [event]
            else:
                found.append(event)
        return groups

    def _reject_invalid(
        self, raw: RawBatch, groups: _Groups, rejects: list[dict[str, Any]], error: InvalidInput
    ) -> _Groups:
        """The batch was refused: find the events the log refuses on their own, reject them."""
        config = self.log.config
        refused: list[tuple[int, str, NewEvent]] = []
        kept: _Groups = {}
        for stream, events in groups.items():
            for event in events:
                try:
                    prepare_append(
                        [StreamAppend(stream, (event,))], key=None, outcome=None, config=config
                    )
                except InvalidInput as exc:
                    refused.append((int(event.metadata["line"]), str(exc), event))
                    continue
                kept.setdefault(stream, []).append(event)
        if not refused:
            raise InvalidInput(
                f"batch {raw.index} (lines {raw.first_line}-{raw.last_line}) cannot be "
                f"appended: {error}; try a smaller --batch-size"
            )
        for line, reason, event in sorted(refused, key=lambda item: item[0]):
            self._bad(raw, line, reason, event.data, rejects)
        rejects.sort(key=lambda item: int(item["line"]))
        return kept

    def _bad(
        self, raw: RawBatch, line: int, reason: str, record: Any, rejects: list[dict[str, Any]]
    ) -> None:
        if self.settings.on_error == "abort":
            raise ImportAborted(
                f"{str(self.file)!r} line {line}: {reason}; stopped (--on-error abort): nothing "
                f"of batch {raw.index} (lines {raw.first_line}-{raw.last_line}) was written",
                line,
                reason,
            )
        rejects.append({"line": line, "reason": reason, "record": _plain(record)})


_Groups = dict[str, list[NewEvent]]


@dataclass(frozen=True, slots=True)
class _Done:
    raw: RawBatch
    outcome: Any
    skipped: bool


def _entries(groups: _Groups) -> list[StreamAppend]:
    return [StreamAppend(stream, events) for stream, events in groups.items()]


def _outcome(size: int, groups: _Groups, rejects: list[dict[str, Any]]) -> dict[str, Any]:
    events = sum(len(events) for events in groups.values())
    return {"records": size, "events": events, "rejects": rejects}


def _plain(record: Any) -> Any:
    """A rejected record as plain JSON (non-finite numbers become null), to keep in the log."""
    return msgspec.json.decode(_json.encode(record))
