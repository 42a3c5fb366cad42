"""Writing so that no reader ever sees half a file: artifacts, cached embeddings,
checkpoints and Triton model repositories are written under a temporary name beside their
place and renamed into it in one step, which a killed process never leaves half done."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(
    final: str | os.PathLike, *, directory: bool = False, mode: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (an empty directory with ``directory``) to
    write into. When the block ends without an error it replaces ``final`` (a directory's
    old contents are removed first); otherwise it is removed and ``final`` is untouched.
    ``mode``: the result's permissions (temporary files are made private)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        staging = Path(tempfile.mkdtemp(prefix=f".partial-{final.name}-", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".partial-{final.name}-", dir=final.parent)
        os.close(fd)
        staging = Path(name)
    try:
        yield staging
        if mode is not None:
            staging.chmod(mode)
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
        raise
