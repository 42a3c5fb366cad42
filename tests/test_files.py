"""Atomic replacement (temporec.files): readers see the old content or the new, never half."""

import pytest

from temporec.files import replaced_atomically


def test_a_file_replaces_the_old_one_only_when_written_whole(tmp_path):
    target = tmp_path / "cache" / "vectors.bin"
    with replaced_atomically(target, mode=0o644) as partial:
        partial.write_text("first")
        assert not target.exists()
    assert target.read_text() == "first" and oct(target.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(RuntimeError), replaced_atomically(target) as partial:
        partial.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "first" and [p.name for p in target.parent.iterdir()] == ["vectors.bin"]


def test_a_directory_replaces_the_old_one_with_all_its_files(tmp_path):
    target = tmp_path / "model"
    for content in ("old", "new"):
        with replaced_atomically(target, directory=True) as staging:
            (staging / content).write_text(content)
    assert [p.name for p in target.iterdir()] == ["new"]
    with pytest.raises(RuntimeError), replaced_atomically(target, directory=True) as staging:
        (staging / "broken").write_text("")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and [p.name for p in target.iterdir()] == ["new"]
