"""Run the Triton Inference Server that the ``nvidia-pytriton`` wheel bundles, on this machine.

The wheel (Linux x86_64) ships Triton 2.51 with the Python backend only: enough to serve the
Python-backend encoders of ``temporec export-triton`` on a CPU. Tests use it, and so can a
developer::

    python -m temporec.triton.local_server triton-repo/ --grpc-port 8001

``LocalTriton`` starts one server process, owns it by pid, waits until its models are
ready, and stops it (SIGTERM, then SIGKILL for the whole process group it started). The
server's output goes to a log file that error messages quote.

Nothing in site-packages is modified: the Python backend expects its stub for this
interpreter beside ``libtriton_python.so``, so the launcher builds, in a scratch directory,
a backend directory of links that mirrors the wheel's layout (the binaries find their
bundled libraries through relative paths).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from temporec.contract.errors import FailedPrecondition, Unavailable

LOG_TAIL = 40  # lines of the server log quoted in errors


def bundled_triton() -> Path:
    """The ``tritonserver`` directory inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")  # found, not imported: its __init__ is heavy
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(
            "the local Triton server comes from the nvidia-pytriton wheel, which is not installed "
            "(Linux x86_64 only: pip install --no-deps nvidia-pytriton==0.7.0, as scripts/setup.sh does)"
        )
    root = Path(spec.submodule_search_locations[0]) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise FailedPrecondition(f"{root}: no bin/tritonserver in the nvidia-pytriton package")
    return root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_directory(scratch: Path, triton: Path | None = None) -> Path:
    """A ``--backend-directory`` for this interpreter: links into the wheel, plus the
    Python-backend stub built for this Python version."""
    triton = triton or bundled_triton()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise FailedPrecondition(f"the bundled Triton has no Python-backend stub for Python {version} ({stub})")
    # Same depth as in site-packages, so the binaries' $ORIGIN/../../../../nvidia_pytriton.libs resolves.
    python_dir = scratch / "pytriton" / "tritonserver" / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    links = {
        scratch / "nvidia_pytriton.libs": triton.parent.parent / "nvidia_pytriton.libs",
        python_dir / "libtriton_python.so": triton / "backends" / "python" / "libtriton_python.so",
        python_dir / "triton_python_backend_utils.py": triton
        / "backends"
        / "python"
        / "triton_python_backend_utils.py",
        python_dir / "triton_python_backend_stub": stub,
    }
    for link, target in links.items():
        if not link.exists():
            link.symlink_to(target)
    return python_dir.parent


def server_environment() -> dict[str, str]:
    """The environment under which the Python backend's stub embeds this interpreter."""
    env = dict(os.environ)
    # Without this the stub may load the system's libpython instead of this interpreter's.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    # model.py imports torch and transformers from this interpreter's environment.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


class LocalTriton:
    """One bundled Triton server process serving ``repository`` on 127.0.0.1.

    ``models`` (optional) loads only those models (explicit model control), so that a
    repository may hold models this server cannot run (ONNX). ``tls`` (certificate file,
    key file) serves gRPC over TLS. Use as a context manager, or call ``start()`` and
    ``stop()``; ``start()`` again after ``stop()`` brings the same server back on the same
    port.
    """

    def __init__(
        self,
        repository: str | os.PathLike,
        models: list[str] | None = None,
        grpc_port: int = 0,
        workdir: str | os.PathLike | None = None,
        tls: tuple[str, str] | None = None,
    ):
        self.repository = Path(repository).resolve()
        self.models = list(models or [])
        self.grpc_port = grpc_port or free_port()
        self.tls = tls
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="temporec-triton-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "tritonserver.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        triton = bundled_triton()
        command = [
            str(triton / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_directory(self.workdir / 'backends', triton)}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-http=false",
            "--allow-metrics=false",
            "--log-verbose=0",
        ]
        if self.tls:
            certificate, key = self.tls
            command += ["--grpc-use-ssl=true", f"--grpc-server-cert={certificate}", f"--grpc-server-key={key}"]
        if self.models:
            command.append("--model-control-mode=explicit")
            command += [f"--load-model={name}" for name in self.models]
        return command

    def start(self, timeout: float = 180.0) -> "LocalTriton":
        """Start the server and wait until it and its models are ready."""
        if self.process and self.process.poll() is None:
            return self
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(),
                start_new_session=True,  # its own group: stop() ends the stubs too
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + timeout
        tls = {"ssl": True, "root_certificates": self.tls[0]} if self.tls else {}
        with grpcclient.InferenceServerClient(self.url, **tls) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    status = self.process.returncode
                    raise FailedPrecondition(f"Triton exited with status {status} while starting:\n{self.log_tail()}")
                try:
                    if client.is_server_ready(client_timeout=2) and all(
                        client.is_model_ready(name, client_timeout=2) for name in self.models
                    ):
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.25)
        self.stop()
        raise Unavailable(f"Triton on {self.url} was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the stubs in its process group go too."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGCONT)  # a paused server must wake to exit
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # leftover backend stubs, if any
        except ProcessLookupError:
            pass

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but answers nothing."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def log_text(self) -> str:
        """Everything the server has written (across restarts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m temporec.triton.local_server",
        description="Serve a Triton model repository with the Triton server bundled in nvidia-pytriton "
        "(Python backend only) on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("repository", help="the model repository (temporec export-triton --out DIR)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 picks a free one)")
    parser.add_argument("--model", action="append", default=[], help="load only this model (repeatable)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM stops Triton too, via __exit__
    with LocalTriton(args.repository, args.model, args.grpc_port) as server:
        print(
            f"Triton serving {server.repository} on {server.url} (pid {server.pid}, log {server.log_path})", flush=True
        )
        try:
            return server.process.wait()
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
