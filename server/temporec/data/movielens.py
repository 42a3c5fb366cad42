"""MovieLens readers (GroupLens formats), all Latin-1:

    ML-1M / ML-10M   movies.dat  MovieID::Title::Genres (genres separated by |)
                     ratings.dat UserID::MovieID::Rating::Timestamp
    ML-100k          u.item      id|title|release date|video release date|IMDb URL|19 genre flags
                     u.genre     genre|flag index (optional: the standard names otherwise)
                     u.data      user<TAB>item<TAB>rating<TAB>timestamp
    sequences        <name>.user_sequences.tsv: user<TAB>movie ids separated by spaces,
                     oldest first, no timestamps; with movies.dat beside it

An item's text is its title and genres, e.g. "Toy Story (1995). Genres: Animation,
Children's, Comedy". Every event gets the action ``action`` ("watch" unless told).
"""

from __future__ import annotations

from pathlib import Path

from temporec.contract.types import Catalog, Dataset, Event
from temporec.data.base import (
    DataError,
    at,
    group_histories,
    numbered_lines,
    require_file,
    split_fields,
)

ENCODING = "latin-1"
ACTION = "watch"
NO_GENRES = "(no genres listed)"  # ML-10M/20M's marker for a movie without genres
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def movie_text(title: str, genres: list[str]) -> str:
    genres = [g for g in genres if g and g != NO_GENRES]
    return f"{title}. Genres: {', '.join(genres)}" if genres else title


def _catalog(path: Path, rows: list[tuple[int, str, str, list[str]]]) -> Catalog:
    """A catalog from ``(line, id, title, genres)`` rows, refusing repeated ids."""
    first_line: dict[str, int] = {}
    for number, item, _, _ in rows:
        if item in first_line:
            raise at(path, number, f"movie id {item!r} repeats line {first_line[item]}")
        first_line[item] = number
    return Catalog(
        [item for _, item, _, _ in rows],
        [movie_text(title, genres) for _, _, title, genres in rows],
        {"genres": ["|".join(genres) for _, _, _, genres in rows]},
    )


def read_movies_dat(path: str | Path) -> Catalog:
    """The movies of an ML-1M/ML-10M ``movies.dat``."""
    path = Path(path)
    rows = []
    for number, line in numbered_lines(path, ENCODING):
        item, title, genres = split_fields(path, number, line, "::", 3, "MovieID::Title::Genres")
        rows.append((number, item.strip(), title.strip(), genres.strip().split("|")))
    return _catalog(path, rows)


def read_genre_names(path: str | Path) -> list[str]:
    """Genre names by flag index from an ML-100k ``u.genre`` (``name|index``)."""
    path = Path(path)
    names: dict[int, str] = {}
    for number, line in numbered_lines(path, ENCODING):
        name, index = split_fields(path, number, line, "|", 2, "genre|index")
        if not index.strip().isdigit():
            raise at(path, number, f"genre index {index!r} is not a whole number")
        names[int(index)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: genre indices are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def read_u_item(path: str | Path, genre_names: list[str] | None = None) -> Catalog:
    """The movies of an ML-100k ``u.item``; ``genre_names`` default to ``u.genre`` beside
    it, else the standard ML-100k list."""
    path = Path(path)
    if genre_names is None:
        genre_file = path.with_name("u.genre")
        genre_names = read_genre_names(genre_file) if genre_file.is_file() else list(ML100K_GENRES)
    count = 5 + len(genre_names)
    rows = []
    for number, line in numbered_lines(path, ENCODING):
        fields = split_fields(path, number, line, "|", count, f"id|title|dates|URL|{len(genre_names)} genre flags")
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise at(path, number, "genre flags must be 0 or 1")
        genres = [name for name, flag in zip(genre_names, flags) if flag == "1"]
        rows.append((number, fields[0].strip(), fields[1].strip(), genres))
    return _catalog(path, rows)


def read_ratings(path: str | Path, catalog: Catalog, separator: str, action: str = ACTION) -> dict[str, list[Event]]:
    """Time-ordered histories from ``ratings.dat`` (``::``) or ``u.data`` (tab):
    user, item, rating, timestamp. The rating is not kept: a rated movie was watched."""
    path = Path(path)
    layout = "user, item, rating, timestamp"

    def rows():
        for number, line in numbered_lines(path, ENCODING):
            user, item, _, stamp = (f.strip() for f in split_fields(path, number, line, separator, 4, layout))
            if item not in catalog.index:
                raise at(path, number, f"movie {item!r} is not in the movie list")
            try:
                timestamp = float(stamp)
            except ValueError:
                raise at(path, number, f"timestamp {stamp!r} is not a number") from None
            yield user, Event(item, action, timestamp)

    return group_histories(rows())


def read_sequences(path: str | Path, catalog: Catalog, action: str = ACTION) -> dict[str, list[Event]]:
    """Histories from a ``user<TAB>ids oldest first`` file; timestamps are unknown (0)."""
    path = Path(path)
    histories: dict[str, list[Event]] = {}
    for number, line in numbered_lines(path, ENCODING):
        user, items = split_fields(path, number, line, "\t", 2, "user<TAB>item ids")
        user = user.strip()
        if user in histories:
            raise at(path, number, f"user {user!r} has a second line")
        ids = items.split()
        unknown = [item for item in ids if item not in catalog.index]
        if unknown:
            raise at(path, number, f"movie {unknown[0]!r} is not in the movie list")
        histories[user] = [Event(item, action) for item in ids]
    return histories


def load_movielens(directory: str | Path, action: str = ACTION) -> Dataset:
    """A MovieLens directory: ``ratings.dat`` + ``movies.dat`` or ``u.data`` + ``u.item``."""
    directory = Path(directory)
    if (directory / "ratings.dat").is_file():
        catalog = read_movies_dat(require_file(directory / "movies.dat", "movies.dat (the movie titles)"))
        histories = read_ratings(directory / "ratings.dat", catalog, "::", action)
    elif (directory / "u.data").is_file():
        catalog = read_u_item(require_file(directory / "u.item", "u.item (the movie titles)"))
        histories = read_ratings(directory / "u.data", catalog, "\t", action)
    else:
        raise DataError(f"{directory}: no MovieLens ratings (ratings.dat or u.data)")
    return Dataset(str(directory.resolve()), catalog, histories)


def load_sequences(path: str | Path, action: str = ACTION) -> Dataset:
    """A ``*.user_sequences.tsv`` file with ``movies.dat`` beside it."""
    path = Path(path)
    catalog = read_movies_dat(require_file(path.with_name("movies.dat"), "movies.dat (the movie titles)"))
    return Dataset(str(path.resolve()), catalog, read_sequences(path, catalog, action))
