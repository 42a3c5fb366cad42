#!/usr/bin/env python3
"""Serve a small real model on a loopback port, for the client tests in other languages.

    .venv/bin/python scripts/serve_test_model.py [--workdir DIR]

Writes a small MovieLens-format data set (40 users, 30 movies, 5-core), trains the real
``lstm`` head of the real ``video`` domain on it with the real ``local`` encoder
(``temporec train``: a few seconds), then becomes ``temporec serve`` on 127.0.0.1 and a
free port, keeping users' tracked events in ``DIR/history.db`` (the ``sqlite`` store).
Standard output carries only the server's ready line,

    temporec serving on 127.0.0.1:PORT (1 models)

and training's report goes to standard error. SIGTERM stops the server. With the same
``--workdir`` a second run reuses the model.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

USERS, MOVIES, RATINGS_PER_USER = 40, 30, 8
GENRES = ("Comedy", "Drama", "Thriller", "Animation", "Documentary", "Sci-Fi")
SUBJECTS = (
    "Robots",
    "Winter",
    "the Sea",
    "a Small Town",
    "Mars",
    "the Orchestra",
    "Dragons",
    "the Museum",
    "Detectives",
    "Summer",
)


def write_movielens(directory: Path, seed: int = 0) -> None:
    """``movies.dat`` and ``ratings.dat`` in the ML-1M format; every user and movie has at
    least 5 ratings, so the video domain's 5-core keeps them all."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    movies = [
        f"{m}::{GENRES[m % len(GENRES)]} about {SUBJECTS[m % len(SUBJECTS)]} ({1990 + m})::{GENRES[m % len(GENRES)]}"
        for m in range(1, MOVIES + 1)
    ]
    (directory / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    ratings = []
    for user in range(1, USERS + 1):
        start = 3 * user % MOVIES  # users watch overlapping runs of movies, each ~10 times
        for step in range(RATINGS_PER_USER):
            movie = (start + step) % MOVIES + 1
            ratings.append(f"{user}::{movie}::{rng.randint(1, 5)}::{1_700_000_000 + 3600 * step + user}")
    (directory / "ratings.dat").write_text("\n".join(ratings) + "\n")


def train_model(workdir: Path) -> Path:
    """Train the lstm head on the generated data unless ``workdir`` already has a model."""
    models = workdir / "models"
    if not any(models.glob("video-lstm-*")):
        data = workdir / "data"
        write_movielens(data)
        command = [
            sys.executable,
            "-m",
            "temporec",
            "train",
            "--domain",
            "video",
            "--head",
            "lstm",
            "--data",
            str(data),
            "--out",
            str(models),
            "--cache-dir",
            str(workdir / "cache"),
            "--epochs",
            "2",
            "--dim",
            "32",
            "--max-len",
            "16",
            "--device",
            "cpu",
        ]
        subprocess.run(command, check=True, stdout=sys.stderr)
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="where the data and model go (default: a new temporary directory)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="temporec-test-server-"))
    models = train_model(workdir)
    serve = [
        sys.executable,
        "-m",
        "temporec",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--models",
        str(models),
        "--device",
        "cpu",
        "--grace-seconds",
        "1",
        # the clients' Track / recommend-by-user-id tests: users' events in the work directory
        "--store",
        f"sqlite://{(workdir / 'history.db').resolve()}",
    ]
    sys.stdout.flush()
    os.execv(sys.executable, serve)  # the server takes this process's place: SIGTERM reaches it


if __name__ == "__main__":
    sys.exit(main())
