"""Fetching MovieLens-100k for the demo: GroupLens over HTTP, else the recbole wheel on PyPI.

The GroupLens path is exercised against a loopback HTTP server serving a small archive
in the official layout; the recbole path downloads the real wheel with pip.
"""

import io
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from temporec.contract.errors import Unavailable
from temporec.data.fetch import SOURCE, movielens_100k

UNREACHABLE = "http://127.0.0.1:9/ml-100k.zip"  # the discard port: connection refused

SMALL_ML100K = {
    "ml-100k/u.data": b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    "ml-100k/u.item": "242|Kolya (1996)|24-Jan-1997||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n".encode(
        "latin-1"
    ),
    "ml-100k/u.genre": b"unknown|0\nAction|1\n",
    "ml-100k/README": b"not extracted\n",
}


@pytest.fixture
def grouplens_server():
    """A loopback HTTP server that serves a small ml-100k.zip and counts requests."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in SMALL_ML100K.items():
            zf.writestr(name, data)
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = archive.getvalue()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/ml-100k.zip", requests
    server.shutdown()
    thread.join()


@pytest.fixture
def no_pip(monkeypatch, tmp_path):
    """Make the recbole fallback impossible: pip is run through ``sys.executable``."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))


def test_downloads_from_grouplens(tmp_path, grouplens_server, no_pip):
    url, requests = grouplens_server
    path = movielens_100k(tmp_path, url=url)
    assert path == tmp_path / "data" / "ml-100k"
    assert sorted(p.name for p in path.iterdir()) == [SOURCE, "u.data", "u.genre", "u.item"]
    for name in ("u.data", "u.item", "u.genre"):
        assert (path / name).read_bytes() == SMALL_ML100K[f"ml-100k/{name}"]
    assert (path / SOURCE).read_text().strip() == url
    assert requests == ["/ml-100k.zip"]

    assert movielens_100k(tmp_path, url=url) == path
    assert requests == ["/ml-100k.zip"]  # cached: no second request


def test_falls_back_to_the_recbole_wheel_and_reuses_the_cache(tmp_path, monkeypatch):
    path = movielens_100k(tmp_path, url=UNREACHABLE, timeout=5)
    assert sorted(p.name for p in path.iterdir()) == [SOURCE, "ml-100k.inter", "ml-100k.item"]
    assert "recbole==1.2.1" in (path / SOURCE).read_text()
    inter = (path / "ml-100k.inter").read_text().splitlines()
    assert inter[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert len(inter) == 100_001
    items = (path / "ml-100k.item").read_text(encoding="utf-8").splitlines()
    assert items[0].startswith("item_id:token\tmovie_title:token_seq")
    assert items[1] == "1\tToy Story\t1995\tAnimation Children's Comedy"
    assert len(items) == 1_683
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".partial")]

    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))  # both sources gone
    assert movielens_100k(tmp_path, url=UNREACHABLE) == path


def test_nothing_reachable_is_unavailable_and_leaves_nothing(tmp_path, no_pip):
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:9.*recbole==1\.2\.1"):
        movielens_100k(tmp_path, url=UNREACHABLE)
    assert list((tmp_path / "data").iterdir()) == []


def test_an_unfinished_copy_is_replaced(tmp_path, grouplens_server):
    url, _ = grouplens_server
    leftover = tmp_path / "data" / "ml-100k"
    leftover.mkdir(parents=True)
    (leftover / "u.data").write_text("truncated")  # no SOURCE: never finished
    path = movielens_100k(tmp_path, url=url)
    assert (path / "u.data").read_bytes() == SMALL_ML100K["ml-100k/u.data"]


def test_default_directory_comes_from_the_environment(tmp_path, monkeypatch, grouplens_server):
    monkeypatch.setenv("TEMPOREC_CACHE_DIR", str(tmp_path / "cache"))
    url, _ = grouplens_server
    assert movielens_100k(url=url) == tmp_path / "cache" / "data" / "ml-100k"
