"""Artifact checksums hashed once per file version (temporec.model.checksums)."""

import os
import time

import pytest

from conftest import build_tiny_artifact
from temporec.contract.errors import FailedPrecondition
from temporec.model.artifacts import WEIGHTS, check_files, read_manifest
from temporec.model.checksums import RACY_SECONDS, Checksums, sha256


def aged(path, seconds=10 * RACY_SECONDS):
    """``path`` last modified ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_known_file_is_not_hashed_again_and_a_changed_one_is(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"a" * 1000)
    aged(data)
    first = Checksums(tmp_path, cache_dir=tmp_path / "cache")
    assert first.sha256("data.bin") == sha256(data) and first.changed
    first.save()
    again = Checksums(tmp_path, cache_dir=tmp_path / "cache")
    assert again.sha256("data.bin") == sha256(data) and not again.changed  # from the cache
    data.write_bytes(b"b" * 1000)  # same size
    aged(data)
    changed = Checksums(tmp_path, cache_dir=tmp_path / "cache")
    assert changed.sha256("data.bin") == sha256(data) and changed.changed


def test_an_entry_made_right_after_a_change_is_not_trusted(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"fresh")
    first = Checksums(tmp_path, cache_dir=tmp_path / "cache")
    first.sha256("data.bin")
    first.save()
    again = Checksums(tmp_path, cache_dir=tmp_path / "cache")
    again.sha256("data.bin")
    assert again.changed  # hashed again: the file changed within RACY_SECONDS of the entry


def test_a_weights_file_altered_in_place_fails_its_checksum_though_verified_before(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPOREC_CACHE_DIR", str(tmp_path / "cache"))
    path = build_tiny_artifact(tmp_path / "models")
    for file in path.iterdir():
        aged(file)
    manifest = read_manifest(path)
    check_files(path, manifest)  # hashed, remembered
    check_files(path, manifest)  # from the cache
    weights = path / WEIGHTS
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the old time back: the change time moves on
    with pytest.raises(FailedPrecondition, match="does not match its checksum"):
        check_files(path, manifest)
