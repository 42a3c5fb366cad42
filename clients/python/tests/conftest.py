"""A live temporec server for the client tests.

The tests run in an environment with the client alone (no torch), so they do not start
the server in process: they use the server at ``TEMPOREC_TEST_SERVER`` (``host:port``;
``scripts/ci-clients.sh`` starts one), or else start ``scripts/serve_test_model.py`` with
the server's Python (``TEMPOREC_SERVER_PYTHON``, default the repository's ``.venv``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SERVE_SCRIPT = REPO / "scripts" / "serve_test_model.py"


@pytest.fixture(scope="session")
def target(tmp_path_factory) -> str:
    """``host:port`` of a server with the small video/lstm/local model."""
    if os.environ.get("TEMPOREC_TEST_SERVER"):
        yield os.environ["TEMPOREC_TEST_SERVER"]
        return
    python = Path(os.environ.get("TEMPOREC_SERVER_PYTHON", REPO / ".venv" / "bin" / "python"))
    if not python.is_file():
        pytest.skip(
            "no server: set TEMPOREC_TEST_SERVER=host:port, or TEMPOREC_SERVER_PYTHON to a Python "
            f"with temporec ({python} is absent)"
        )
    command = [str(python), str(SERVE_SCRIPT), "--workdir", str(tmp_path_factory.mktemp("server"))]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # the ready line, or "" when it exited
        match = re.search(r"serving on (\S+)", line)
        if not match:
            raise RuntimeError(
                f"the test server did not start (exit code {server.wait(timeout=10)}): {' '.join(command)}"
            )
        yield match.group(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
