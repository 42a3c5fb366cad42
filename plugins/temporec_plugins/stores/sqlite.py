"""The ``sqlite`` store: users' events in one SQLite file, for a single server (its
``--workers`` processes each open the file: SQLite locks it, one writer at a time).

``store = "sqlite:///var/lib/temporec/history.db"`` (an absolute path) or
``"sqlite:history.db"`` (relative to the working directory). One table, keyed by
(user_id, event_id): ``INSERT OR IGNORE`` makes a retried event a no-op. Write-ahead
logging lets reads run beside the writer, and ``synchronous=FULL`` syncs the log at every
commit, so an acknowledged event survives a crash of the process and of the machine
(``NORMAL`` would survive only the process: a power cut could lose the last commits).
One commit per ``append`` call: a batch costs one sync, however many events it holds.
Experiments' exposures are a second table, one row per answer of an arm; the monitor's
texts, alerts and subscribers' acknowledgements three more (docs/finance.md).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import temporec
from temporec import Event, Exposure, MonitoredText, Store, StoreSettings, TrackedEvent, Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,  -- arrival order: ties of equal timestamps keep it
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (user_id, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (user_id, timestamp_ms, seq);
CREATE TABLE IF NOT EXISTS exposures (
    seq INTEGER PRIMARY KEY,
    experiment TEXT NOT NULL,
    arm TEXT NOT NULL,
    user_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    items TEXT NOT NULL  -- a JSON list, best first
);
CREATE INDEX IF NOT EXISTS exposures_by_experiment ON exposures (experiment, timestamp_ms, seq);
CREATE INDEX IF NOT EXISTS exposures_by_user ON exposures (user_id);
CREATE TABLE IF NOT EXISTS monitored_texts (
    seq INTEGER PRIMARY KEY,  -- arrival order: the monitor replays its state in it
    text_id TEXT NOT NULL UNIQUE,
    timestamp_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    negative_probability REAL NOT NULL,
    topics TEXT NOT NULL  -- a JSON list
);
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a subscriber's mark stays valid
    key TEXT NOT NULL UNIQUE,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_acknowledgements (
    subscriber TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""
KEEP_TEXT = (
    "INSERT OR IGNORE INTO monitored_texts (text_id, timestamp_ms, source, text, label, negative_probability, topics) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
ACKNOWLEDGE = (
    "INSERT INTO alert_acknowledgements (subscriber, seq) VALUES (?, ?) "
    "ON CONFLICT (subscriber) DO UPDATE SET seq = max(seq, excluded.seq)"
)
EXPOSE = "INSERT INTO exposures (experiment, arm, user_id, request_id, timestamp_ms, items) VALUES (?, ?, ?, ?, ?, ?)"
EXPOSURES = (
    "SELECT arm, user_id, request_id, timestamp_ms, items FROM exposures WHERE experiment = ? "
    "ORDER BY timestamp_ms, seq"
)
INSERT = (
    "INSERT OR IGNORE INTO events (user_id, event_id, timestamp_ms, item_id, action, text) VALUES (?, ?, ?, ?, ?, ?)"
)
# Beyond the cap: the user's events past the newest max_events, by time then arrival.
TRIM = (
    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE user_id = ? "
    "ORDER BY timestamp_ms DESC, seq DESC LIMIT -1 OFFSET ?)"
)
EXPIRE = "DELETE FROM events WHERE user_id = ? AND timestamp_ms < ?"
RECENT = (
    "SELECT event_id, timestamp_ms, item_id, action, text FROM events WHERE user_id = ? AND timestamp_ms >= ? "
    "ORDER BY timestamp_ms DESC, seq DESC LIMIT ?"
)


def database_path(url: str) -> Path:
    parts = urlsplit(url)
    path = parts.netloc + parts.path  # sqlite:history.db has the path alone
    if not path:
        raise temporec.InvalidArgument(f"store: {url!r} names no file; e.g. sqlite:///var/lib/temporec/history.db")
    return Path(path)


class SQLiteStore(Store):
    name = "sqlite"

    def __init__(self, url: str, settings: StoreSettings):
        super().__init__(url, settings)
        self.path = database_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, one writer at a time: SQLite serializes writers anyway.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # ForgetUser must leave nothing readable in the file: deleted rows are overwritten
        # with zeros, not left in free pages.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(SCHEMA)

    def append(self, events: Sequence[TrackedEvent]) -> int:
        rows = [(e.user_id, e.event_id, to_ms(e.event.timestamp), *fields(e.event)) for e in events]
        users = sorted({e.user_id for e in events})
        with self._lock, self._guard():
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(INSERT, rows)
                added = self._db.total_changes - before
                for user in users:
                    self._db.execute(TRIM, (user, self.settings.max_events))
                    if self.settings.retention_seconds:
                        self._db.execute(EXPIRE, (user, self._cutoff_ms()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added

    def history(self, user_id: str, limit: int) -> list[TrackedEvent]:
        with self._lock, self._guard():
            rows = self._db.execute(RECENT, (user_id, self._cutoff_ms(), limit)).fetchall()
        return [
            TrackedEvent(user_id, event_id, Event(item, action, ms / 1000, text))
            for event_id, ms, item, action, text in reversed(rows)
        ]

    def record_exposure(self, exposure: Exposure) -> None:
        items = json.dumps(list(exposure.items), ensure_ascii=False)
        row = (exposure.experiment, exposure.arm, exposure.user_id, exposure.request_id, to_ms(exposure.timestamp))
        with self._lock, self._guard():
            self._db.execute(EXPOSE, (*row, items))

    def exposures(self, experiment: str) -> list[Exposure]:
        with self._lock, self._guard():
            rows = self._db.execute(EXPOSURES, (experiment,)).fetchall()
        return [
            Exposure(experiment, arm, user, request_id, tuple(json.loads(items)), ms / 1000)
            for arm, user, request_id, ms, items in rows
        ]

    def record_texts(self, texts: Sequence[MonitoredText]) -> list[bool]:
        with self._lock, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = [self._db.execute(KEEP_TEXT, text_row(t)).rowcount == 1 for t in texts]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def monitored_texts(self) -> list[MonitoredText]:
        query = (
            "SELECT text_id, text, timestamp_ms, source, label, negative_probability, topics "
            "FROM monitored_texts ORDER BY seq"
        )
        with self._lock, self._guard():
            rows = self._db.execute(query).fetchall()
        return [
            MonitoredText(text_id, text, ms / 1000, source, label, negative, tuple(json.loads(topics)))
            for text_id, text, ms, source, label, negative, topics in rows
        ]

    def record_alert(self, key: str, document: str) -> tuple[int, bool]:
        with self._lock, self._guard():
            new = self._db.execute("INSERT OR IGNORE INTO alerts (key, document) VALUES (?, ?)", (key, document))
            (sequence,) = self._db.execute("SELECT seq FROM alerts WHERE key = ?", (key,)).fetchone()
        return sequence, new.rowcount == 1

    def alerts_after(self, sequence: int, limit: int) -> list[tuple[int, str]]:
        query = "SELECT seq, document FROM alerts WHERE seq > ? ORDER BY seq LIMIT ?"
        with self._lock, self._guard():
            return self._db.execute(query, (sequence, limit)).fetchall()

    def acknowledge(self, subscriber: str, sequence: int) -> int:
        with self._lock, self._guard():
            self._db.execute(ACKNOWLEDGE, (subscriber, sequence))
        return self.acknowledged(subscriber)

    def acknowledged(self, subscriber: str) -> int:
        query = "SELECT seq FROM alert_acknowledgements WHERE subscriber = ?"
        with self._lock, self._guard():
            row = self._db.execute(query, (subscriber,)).fetchone()
        return row[0] if row else 0

    def forget(self, user_id: str) -> int:
        with self._lock, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = self._db.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount
                self._db.execute("DELETE FROM exposures WHERE user_id = ?", (user_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # The log still holds the pages as they were: move the zeroed ones into the file
            # and empty the log, so nothing of the user is left on disk.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def healthy(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _cutoff_ms(self) -> int:
        retention = self.settings.retention_seconds
        return to_ms(time.time() - retention) if retention else 0

    def _guard(self):
        return Guard(self.path)


class Guard:
    """A disk that is full or gone is the store being unavailable, not a server bug."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, sqlite3.OperationalError):
            raise Unavailable(f"store 'sqlite' ({self.path}): {exc}") from exc
        return False


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def fields(event: Event) -> tuple[str, str, str]:
    return event.item_id, event.action, event.text


def text_row(text: MonitoredText) -> tuple:
    topics = json.dumps(list(text.topics), ensure_ascii=False)
    return text.text_id, to_ms(text.timestamp), text.source, text.text, text.label, text.negative_probability, topics


@temporec.hookimpl
def register_stores(register):
    register(SQLiteStore)
