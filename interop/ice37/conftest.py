"""Starts the built omero-sessiond binary on free ports with a temporary data directory.

The binary is $OMERO_SESSIOND_BIN, else $CARGO_TARGET_DIR/debug/omero-sessiond, else
<repo>/target/debug/omero-sessiond.
"""

import os
import pathlib
import socket
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def binary():
    if os.environ.get("OMERO_SESSIOND_BIN"):
        return pathlib.Path(os.environ["OMERO_SESSIOND_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "omero-sessiond"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_user(data_dir, name, password):
    """`omero-sessiond user add`, before the server starts on `data_dir`."""
    res = subprocess.run(
        [str(binary()), "user", "add", name, "--password-stdin", "--data", data_dir],
        input=password, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"user add {name} failed: {res.stdout} {res.stderr}")


class Server:
    """`users` maps user names to passwords, added before the server starts."""

    def __init__(self, config_text=None, users=None):
        self.dir = tempfile.TemporaryDirectory()
        self.tcp = free_port()
        self.ssl = free_port()
        self.data = os.path.join(self.dir.name, "data")
        for name, password in (users or {}).items():
            add_user(self.data, name, password)
        args = [
            str(binary()), "serve",
            "--data", self.data,
            "--tcp", f"127.0.0.1:{self.tcp}",
            "--ssl", f"127.0.0.1:{self.ssl}",
            # The HTTPS listener defaults to 0.0.0.0:4080, which two servers (or another
            # suite running at the same time) cannot share.
            "--https", "off",
        ]
        if config_text is not None:
            path = os.path.join(self.dir.name, "config.toml")
            with open(path, "w") as f:
                f.write(config_text)
            args += ["--config", path]
        self.log = open(os.path.join(self.dir.name, "server.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self._wait_listening()

    def _wait_listening(self):
        deadline = time.time() + 30
        seen = set()
        while time.time() < deadline and seen != {"tcp", "ssl"}:
            line = self.proc.stdout.readline()
            if not line:
                break
            for kind in ("tcp", "ssl"):
                if f"listening on {kind}" in line:
                    seen.add(kind)
        if seen != {"tcp", "ssl"}:
            self.stop()
            raise RuntimeError(f"server did not start: {self.logs()}")

    def port(self, transport):
        return self.tcp if transport == "tcp" else self.ssl

    def logs(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    code = s.proc.poll()
    s.stop()
    assert code is None, "server died during the tests"


@pytest.fixture
def make_server():
    started = []

    def make(config_text=None, users=None):
        s = Server(config_text, users)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
