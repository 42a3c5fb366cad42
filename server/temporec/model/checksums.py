"""The sha256 of artifact files, hashed once: a server that starts again, or reloads, does
not re-read gigabytes it verified before.

A file's checksum is remembered with its size, modification time, change time and inode
(in ``<cache_root>/checksums/``, one small JSON file per directory), and trusted while
all four are unchanged. As git does for its index, an entry made less than
``RACY_SECONDS`` after the file's last modification is not trusted: a same-size rewrite within
the file system's timestamp granularity could otherwise pass for the file it replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from temporec.files import replaced_atomically
from temporec.model.embedding_cache import cache_root

log = logging.getLogger(__name__)

RACY_SECONDS = 2.0


def sha256(path: Path) -> str:
    """The file's sha256, hashed in full."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Checksums:
    """The remembered checksums of one directory's files."""

    def __init__(self, directory: Path, cache_dir: str | os.PathLike | None = None):
        self.directory = directory.resolve()
        key = hashlib.sha256(str(self.directory).encode()).hexdigest()[:24]
        self.path = cache_root(cache_dir) / "checksums" / f"{key}.json"
        self.entries = self._read()
        self.changed = False

    def sha256(self, name: str) -> str:
        """The sha256 of ``name`` (relative to the directory), hashed only when unknown."""
        path = self.directory / name
        stamp = _stamp(path)
        entry = self.entries.get(name)
        if entry and entry["stamp"] == stamp and entry["at"] - stamp[1] / 1e9 >= RACY_SECONDS:
            return entry["sha256"]
        digest = sha256(path)
        self.entries[name] = {"stamp": stamp, "sha256": digest, "at": time.time()}
        self.changed = True
        return digest

    def save(self) -> None:
        """Remember what was hashed; a cache that cannot be written costs a re-hash next time."""
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with replaced_atomically(self.path) as staging:
                staging.write_text(json.dumps({"directory": str(self.directory), "files": self.entries}))
        except OSError as exc:
            log.warning("checksums of %s not cached: %s", self.directory, exc)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data.get("files", {}) if data.get("directory") == str(self.directory) else {}


def _stamp(path: Path) -> list[int]:
    """What changes when the file does: size, mtime, ctime (ns), inode."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
