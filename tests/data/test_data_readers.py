"""Data readers on small generated files: layouts, item texts, ordering, and errors that
name the file and line."""

import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from temporec.contract.errors import InvalidArgument
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data import DataError, k_core, load_dataset
from temporec.data.events import read_events
from temporec.data.movielens import read_u_item

ML1M = SHARED_DATA / "ml-1m"

MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Amélie (2001)::Comedy|Romance\n3::Heat (1995)::Action\n"
)
GENRES = "".join(f"{name}|{i}\n" for i, name in enumerate(["unknown", "Action", "Comedy"]))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def item_flags(*flags: int) -> str:
    return "|".join(map(str, flags))


@pytest.fixture
def ml1m_style(tmp_path) -> Path:
    write(tmp_path / "movies.dat", MOVIES_DAT, "latin-1")
    write(tmp_path / "ratings.dat", "7::2::5::300\n7::1::3::100\n7::3::4::300\n8::3::1::50\n")
    return tmp_path


def test_dataerror_is_an_invalid_argument():
    assert issubclass(DataError, InvalidArgument)


def test_movielens_dat_reads_latin1_titles_genres_and_sorts_by_time(ml1m_style):
    dataset = load_dataset(ml1m_style)
    assert dataset.catalog.item_ids == ["1", "2", "3"]
    assert dataset.catalog.texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert dataset.catalog.texts[1] == "Amélie (2001). Genres: Comedy, Romance"
    assert dataset.catalog.features["genres"][2] == "Action"
    # Sorted by time; equal times keep file order.
    assert [(e.item_id, e.timestamp) for e in dataset.sequences["7"]] == [("1", 100.0), ("2", 300.0), ("3", 300.0)]
    assert {e.action for events in dataset.sequences.values() for e in events} == {"watch"}
    assert dataset.name == str(ml1m_style.resolve())
    assert load_dataset(ml1m_style / "ratings.dat").sequences == dataset.sequences


def test_movielens_100k_uses_u_genre_names(tmp_path):
    write(tmp_path / "u.genre", GENRES)
    write(
        tmp_path / "u.item",
        f"1|Heat (1995)|01-Jan-1995||http://x|{item_flags(0, 1, 0)}\n"
        f"2|Clerks (1994)|01-Jan-1994||http://y|{item_flags(0, 0, 1)}\n",
        "latin-1",
    )
    write(tmp_path / "u.data", "5\t2\t4\t20\n5\t1\t3\t10\n")
    dataset = load_dataset(tmp_path / "u.data")
    assert dataset.catalog.texts == ["Heat (1995). Genres: Action", "Clerks (1994). Genres: Comedy"]
    assert [e.item_id for e in dataset.sequences["5"]] == ["1", "2"]


def test_u_item_without_u_genre_uses_the_standard_19_genres(tmp_path):
    flags = [0] * 19
    flags[3] = flags[4] = 1  # Animation, Children's
    catalog = read_u_item(write(tmp_path / "u.item", f"1|Toy Story (1995)|01-Jan-1995||u|{item_flags(*flags)}\n"))
    assert catalog.texts == ["Toy Story (1995). Genres: Animation, Children's"]


def test_sequences_file_keeps_order_with_unknown_times(tmp_path):
    write(tmp_path / "movies.dat", MOVIES_DAT, "latin-1")
    path = write(tmp_path / "x.user_sequences.tsv", "1\t3 1 2\n2\t2 3\n")
    for source in (path, tmp_path):
        dataset = load_dataset(source)
        assert [e.item_id for e in dataset.sequences["1"]] == ["3", "1", "2"]
        assert all(e.timestamp == 0 for events in dataset.sequences.values() for e in events)


@pytest.mark.parametrize(
    "ratings, line, message",
    [
        ("1::1::5::10\n1::2::5\n", 2, "expected 4 fields"),
        ("1::1::5::10\n\n1::9::5::10\n", 3, "movie '9' is not in the movie list"),
        ("1::1::5::soon\n", 1, "timestamp 'soon' is not a number"),
    ],
)
def test_malformed_ratings_name_file_and_line(ml1m_style, ratings, line, message):
    write(ml1m_style / "ratings.dat", ratings)
    with pytest.raises(DataError, match=f"ratings.dat:{line}: {message}"):
        load_dataset(ml1m_style)


def test_malformed_movie_rows_name_file_and_line(tmp_path):
    write(tmp_path / "ratings.dat", "1::1::5::10\n")
    write(tmp_path / "movies.dat", "1::A::Drama\n1::B::Drama\n")
    with pytest.raises(DataError, match=r"movies.dat:2: movie id '1' repeats line 1"):
        load_dataset(tmp_path)
    write(tmp_path / "u.item", f"1|A|d||u|{item_flags(0, 2, 0)}\n")
    write(tmp_path / "u.genre", GENRES)
    with pytest.raises(DataError, match=r"u.item:1: genre flags must be 0 or 1"):
        read_u_item(tmp_path / "u.item")


def test_movielens_directory_needs_the_titles(tmp_path):
    write(tmp_path / "ratings.dat", "1::1::5::10\n")
    with pytest.raises(DataError, match="movies.dat"):
        load_dataset(tmp_path)


RECBOLE_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t20\t3\t200\n1\t10\t4\t100\n2\t20\t5\t50\n"
)
RECBOLE_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tprice:float\n"
    "10\tToy Story\t1995\tAnimation Children's Comedy\t1.5\n20\tHeat\t\tAction\t2\n"
)


def test_recbole_atomic_files(tmp_path):
    write(tmp_path / "toy" / "toy.inter", RECBOLE_INTER)
    write(tmp_path / "toy" / "toy.item", RECBOLE_ITEM)
    dataset = load_dataset(tmp_path / "toy")
    assert dataset.catalog.texts == [
        "Toy Story. Release year: 1995. Class: Animation Children's Comedy",
        "Heat. Class: Action",
    ]
    assert dataset.catalog.features["price"] == ["1.5", "2"]
    assert [e.item_id for e in dataset.sequences["1"]] == ["10", "20"]
    assert dataset.sequences["2"] == [Event("20", "", 50.0)]
    assert load_dataset(tmp_path / "toy" / "toy.inter").sequences == dataset.sequences


@pytest.mark.parametrize(
    "inter, message",
    [
        ("user_id:token\titem_id:tok\n1\t10\n", r"toy.inter:1: header column 'item_id:tok' is not name:type"),
        ("user_id:token\tstamp:float\n1\t10\n", r"toy.inter:1: header lacks 'item_id'"),
        (
            "user_id:token\titem_id:token\n1\t10\n2\n",
            r"toy.inter:3: expected 2 fields \(tab-separated, one per header field\), found 1",
        ),
        ("user_id:token\titem_id:token\n1\t10\n1\t99\n", r"toy.inter:3: item '99' is not in the .item file"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t10\tx\n", r"toy.inter:2: timestamp 'x' is not a number"),
    ],
)
def test_recbole_errors_name_file_and_line(tmp_path, inter, message):
    write(tmp_path / "toy.item", RECBOLE_ITEM)
    with pytest.raises(DataError, match=message):
        load_dataset(write(tmp_path / "toy.inter", inter))


def test_events_csv_with_items_file_and_event_text(tmp_path):
    write(tmp_path / "items.csv", "item_id,title,category\na,Red shoes,shoes\nb,Blue hat,hats\n")
    write(
        tmp_path / "events.csv",
        "user_id,item_id,timestamp,action,text\n"
        "u1,b,2024-01-02T00:00:00,buy,\n"
        "u1,a,2024-01-01T00:00:00Z,view,\n"
        "u2,c,5,view,\n"
        "u2,c,7,view,Green scarf\n",
    )
    dataset = load_dataset(tmp_path)
    assert dataset.catalog.item_ids == ["a", "b", "c"]
    assert dataset.catalog.texts == ["Red shoes. Category: shoes", "Blue hat. Category: hats", "Green scarf"]
    assert dataset.catalog.features == {"title": ["Red shoes", "Blue hat", ""], "category": ["shoes", "hats", ""]}
    assert [(e.item_id, e.action, e.timestamp) for e in dataset.sequences["u1"]] == [
        ("a", "view", 1704067200.0),
        ("b", "buy", 1704153600.0),
    ]


def test_events_jsonl(tmp_path):
    write(tmp_path / "items.jsonl", json.dumps({"item_id": 1, "text": "A lamp", "price": 9.5}) + "\n")
    rows = [
        {"user_id": "u", "item_id": 1, "timestamp": 3},
        {"user_id": "u", "item_id": 1, "timestamp": 1, "action": "buy"},
    ]
    path = write(tmp_path / "log.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_dataset(path)
    assert dataset.catalog == Catalog(["1"], ["A lamp"], {"price": ["9.5"]})
    assert [(e.action, e.timestamp) for e in dataset.sequences["u"]] == [("buy", 1.0), ("", 3.0)]


@pytest.mark.parametrize(
    "events, message",
    [
        ("user_id,item_id\nu,a\nu,zz\n", r"events.csv:3: item 'zz' is neither in the items file"),
        ("user_id,item_id,timestamp\nu,a,yesterday\n", r"events.csv:2: timestamp 'yesterday' is neither"),
        ("user_id,item_id\nu,a\n,a\n", r"events.csv:3: missing 'user_id'"),
        ("user_id,item_id\nu,a,extra\n", r"events.csv:2: expected 2 fields"),
        (
            "u,a,1700000000\nu,a,1700000060\n",
            r"events.csv:1: the first row was taken for the header and names 'u', 'a', '1700000000', "
            r"not 'item_id', 'user_id'; the file needs a header row naming at least 'item_id', 'user_id'",
        ),
    ],
)
def test_event_errors_name_file_and_line(tmp_path, events, message):
    items = write(tmp_path / "items.csv", "item_id,text\na,Apple\n")
    with pytest.raises(DataError, match=message):
        read_events(write(tmp_path / "events.csv", events), items)


def test_invalid_jsonl_line_is_named(tmp_path):
    path = write(tmp_path / "events.jsonl", '{"user_id": "u", "item_id": "a", "text": "x"}\n{oops\n')
    with pytest.raises(DataError, match=r"events.jsonl:2: invalid JSON"):
        load_dataset(path)


def test_unrecognised_layout_lists_the_known_ones(tmp_path):
    with pytest.raises(DataError, match="not a recognised data set; expected a MovieLens directory"):
        load_dataset(write(tmp_path / "notes.txt", "hello\n"))
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "absent")


def test_k_core_repeats_until_stable(caplog):
    caplog.set_level("INFO", "temporec.data")
    # Item "x" has 1 interaction: dropping it leaves user "b" with 1 event, and dropping
    # "b" leaves item "z" with 1 interaction, so "z" goes on the second pass.
    sequences = {
        "a": [Event(i) for i in "yyz"],
        "b": [Event(i) for i in "xz"],
        "c": [Event(i) for i in "yy"],
    }
    catalog = Catalog(["w", "x", "y", "z"], ["W", "X", "Y", "Z"], {"f": ["1", "2", "3", "4"]})
    core = k_core(Dataset("t", catalog, sequences), k=2)
    assert core.sequences == {"a": [Event("y"), Event("y")], "c": [Event("y"), Event("y")]}
    assert core.catalog == Catalog(["y"], ["Y"], {"f": ["3"]})
    # What was dropped is said, not done silently.
    assert (
        "t: kept the 2-core (items and users with at least 2 events): 1 of 4 items, 2 of 3 users, 4 of 7 events"
        in caplog.text
    )


@pytest.mark.skipif(not ML1M.is_dir(), reason=f"shared data set absent: {ML1M}")
def test_real_ml1m_sequences_five_core_matches_the_protocol():
    dataset = k_core(load_dataset(ML1M))
    assert (len(dataset.sequences), len(dataset.catalog)) == (6040, 3416)
    assert sum(map(len, dataset.sequences.values())) == 999_611
    assert dataset.catalog.texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"


# -- a shop log as it comes: its own column names, action names, milliseconds, ids only --

RETAILROCKET = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,view,248676,
1433221999827,257597,addtocart,355908,
1433222276276,257597,transaction,355908,4000
"""
RETAILROCKET_LAYOUT = """columns = { user_id = "visitorid", item_id = "itemid", action = "event" }
actions = { addtocart = "cart", transaction = "purchase" }
"""


def test_a_shop_log_reads_with_its_column_and_action_mapping_and_milliseconds(tmp_path):
    write(tmp_path / "events.toml", RETAILROCKET_LAYOUT)
    dataset = load_dataset(write(tmp_path / "events.csv", RETAILROCKET))
    assert [(e.item_id, e.action, e.timestamp) for e in dataset.sequences["257597"]] == [
        ("355908", "view", 1433221332.117),
        ("355908", "cart", 1433221999.827),  # sorted by time, unmapped actions kept
        ("355908", "purchase", 1433222276.276),
    ]
    assert dataset.catalog == Catalog(["355908", "248676"], ["", ""])  # ids only: no text, no error


def test_a_file_without_a_header_row_reads_with_the_header_its_layout_names(tmp_path):
    body = RETAILROCKET.split("\n", 1)[1]
    write(
        tmp_path / "events.toml",
        RETAILROCKET_LAYOUT + 'header = ["timestamp", "visitorid", "event", "itemid", "tid"]\n',
    )
    dataset = load_dataset(write(tmp_path / "events.csv", body))
    assert len(dataset.sequences["257597"]) == 3 and dataset.sequences["992329"][0].timestamp == 1433224214.164


@pytest.mark.parametrize(
    ("value", "unit", "seconds"),
    [("1700000000", "auto", 1.7e9), ("1700000000000", "auto", 1.7e9), ("1700000000", "ms", 1.7e6), ("2e11", "s", 2e11)],
)
def test_timestamps_in_seconds_or_milliseconds(tmp_path, value, unit, seconds):
    write(tmp_path / "events.toml", f'time_unit = "{unit}"\n')
    dataset = load_dataset(write(tmp_path / "events.csv", f"user_id,item_id,timestamp\nu,a,{value}\n"))
    assert dataset.sequences["u"][0].timestamp == seconds


def test_an_items_file_of_ids_only_gives_items_without_text(tmp_path):
    write(tmp_path / "items.csv", "item_id\n100004\n100005\n")
    dataset = load_dataset(write(tmp_path / "events.csv", "user_id,item_id\nu,100004\nu,100005\n"))
    assert dataset.catalog == Catalog(["100004", "100005"], ["", ""])


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ('colums = { user_id = "v" }\n', r"events.toml: unknown key 'colums'; allowed: 'actions', 'columns', 'header'"),
        ('columns = { visitor = "v" }\n', r"events.toml: columns: unknown field 'visitor'; allowed: 'action', "),
        ('time_unit = "us"\n', r"events.toml: time_unit: 'us'; allowed: 'auto', 'ms', 's'"),
        (
            'columns = { user_id = "visitor" }\n',
            r"events.toml: names column 'visitor', which the header row of events.csv lacks; the columns are 'user_id', 'item_id'",
        ),
        ("columns = [", r"events.toml: unreadable"),
    ],
)
def test_a_wrong_layout_is_named_with_what_is_allowed(tmp_path, layout, message):
    write(tmp_path / "events.toml", layout)
    with pytest.raises(DataError, match=message):
        load_dataset(write(tmp_path / "events.csv", "user_id,item_id\nu,a\n"))


# -- RecBole's sequential benchmark files: the split is the files' ------------------------


def write_sequential(directory: Path, test_row: str = "u1\t3 4\t5") -> Path:
    """u1's sequence 1 2 3 4 5, its histories cut to their last 2 items as the files do;
    u2's 7 8 9 6, with a text for every item but 9."""
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(directory / "X.train.inter", header + "u1\t1\t2\nu1\t1 2\t3\nu2\t7\t8\n")
    write(directory / "X.valid.inter", header + "u1\t2 3\t4\nu2\t7 8\t9\n")
    write(directory / "X.test.inter", header + test_row + "\nu2\t8 9\t6\n")
    texts = "".join(f"{i}\titem {i} text\n" for i in (1, 2, 3, 4, 5, 6, 7, 8))
    write(directory / "X.text", "item_id:token\ttext:token_seq\n" + texts)
    return directory


def test_recbole_sequential_files_rebuild_each_sequence_and_keep_the_given_split(tmp_path):
    from temporec.training.splits import encode, eval_split

    dataset = load_dataset(write_sequential(tmp_path))
    assert {u: [e.item_id for e in events] for u, events in dataset.sequences.items()} == {
        "u1": ["1", "2", "3", "4", "5"],
        "u2": ["7", "8", "9", "6"],
    }
    assert dataset.catalog.texts[dataset.catalog.index["9"]] == ""  # not in X.text: known by id
    assert dataset.catalog.texts[dataset.catalog.index["3"]] == "item 3 text"
    seqs = encode(dataset, ["watch"])
    index = dataset.catalog.item_ids
    assert [index[i] for i in eval_split(seqs, "test").targets] == ["5", "6"]  # the test file's targets
    assert [index[i] for i in eval_split(seqs, "valid").targets] == ["4", "9"]  # the valid file's
    assert load_dataset(tmp_path / "X.test.inter").sequences == dataset.sequences  # any of the three names them


def test_a_sequential_row_that_does_not_continue_its_user_is_refused(tmp_path):
    write_sequential(tmp_path, test_row="u1\t9 4\t5")
    with pytest.raises(DataError, match=r"X.test.inter:2: the history of user 'u1' does not continue its earlier rows"):
        load_dataset(tmp_path)


def test_sequential_files_come_as_three(tmp_path):
    write_sequential(tmp_path)
    (tmp_path / "X.valid.inter").unlink()
    with pytest.raises(DataError, match=r"X.valid.inter: the valid split of X .* not found"):
        load_dataset(tmp_path / "X.train.inter")
