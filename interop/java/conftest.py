"""Fixtures for the Java client suite: slice2java output compiled once, and a real server.

Runs under Debian's /usr/bin/python3 (python3-pytest). The generated classes are compiled once
per content of slice/ and the compiler and jar versions, into
~/.cache/omero-sessiond/java/<hash>, because javac needs minutes for the ~4500 generated files.
"""
import functools
import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SLICE = REPO / "slice"
SLICE_DIRS = ("Ice", "Glacier2", "omero")
# Debian's libzeroc-ice3.7-java; the compat jars give the Ice 3.6 style API OMERO Java uses.
JAVA_DIR = pathlib.Path("/usr/share/java")
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "omero-sessiond" / "java"
USERS = {"alice": "alicepw", "bob": "bobpw"}


def binary():
    if os.environ.get("OMERO_SESSIOND_BIN"):
        return pathlib.Path(os.environ["OMERO_SESSIOND_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "omero-sessiond"


def slice_files():
    return sorted(p for d in SLICE_DIRS for p in (SLICE / d).rglob("*.ice"))


def jar(name):
    """Debian ships only versioned names (ice-compat-3.7.8.jar); the version is then part of the
    cache key."""
    found = sorted(JAVA_DIR.glob(f"{name}-3.7.*.jar"))
    if not found:
        pytest.fail(f"{JAVA_DIR}/{name}-3.7.*.jar is missing: run interop/setup (libzeroc-ice3.7-java)")
    return found[-1]


def tool(name):
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run interop/setup")
    return found


def run(cmd, **kw):
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def cache_key(ice_jar):
    h = hashlib.sha256()
    h.update(run([tool("slice2java"), "--version"]).stdout.encode())
    h.update(run([tool("javac"), "-version"]).stdout.encode())
    h.update(str(ice_jar).encode())
    for p in slice_files():
        h.update(str(p.relative_to(SLICE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def compile_generated(ice_jar):
    """slice2java --compat over slice/, then javac; Ice/ is generated but not compiled, since the
    Ice runtime jar carries those classes itself."""
    out = CACHE / cache_key(ice_jar)
    if (out / "classes" / "omero" / "api" / "ServiceFactoryPrx.class").exists():
        os.utime(out)  # recently used, for prune_cache
        return out / "classes"
    CACHE.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
    try:
        gen = work / "gen"
        gen.mkdir()
        run([tool("slice2java"), "--compat", "-I", SLICE, "--output-dir", gen, *slice_files()])
        sources = [p for d in ("Glacier2", "omero") for p in (gen / d).rglob("*.java")]
        (work / "sources.txt").write_text("\n".join(str(p) for p in sources))
        (work / "classes").mkdir()
        run([tool("javac"), "-nowarn", "-encoding", "UTF-8", "-J-Xmx2g", "-cp", ice_jar,
             "-d", work / "classes", "@" + str(work / "sources.txt")], timeout=1800)
        shutil.rmtree(gen)
        try:
            work.rename(out)
        except OSError:
            # Another run finished the same build first; theirs is as good.
            pass
        prune_cache(keep=3)
        return out / "classes"
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def prune_cache(keep):
    """Keeps the newest few builds (about 30 MB each): worktrees with different slice/ may
    alternate, and a rebuild takes minutes."""
    builds = sorted((p for p in CACHE.iterdir() if p.is_dir() and not p.name.startswith("build-")),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)


@pytest.fixture(scope="session")
def java_classpath(tmp_path_factory):
    ice_jar = jar("ice-compat")
    glacier2_jar = jar("glacier2-compat")
    generated = compile_generated(ice_jar)
    test_classes = tmp_path_factory.mktemp("java-test")
    cp = os.pathsep.join(str(p) for p in (generated, ice_jar, glacier2_jar))
    run([tool("javac"), "-encoding", "UTF-8", "-cp", cp, "-d", test_classes,
         REPO / "interop" / "java" / "src" / "SessionClientTest.java"])
    return os.pathsep.join((str(test_classes), cp))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=None)
def serve_supports(flag):
    res = subprocess.run([str(binary()), "serve", "--help"], capture_output=True, text=True, timeout=60)
    return flag in res.stdout


class Server:
    """One omero-sessiond with its own data directory, on free ports of 127.0.0.1."""

    def __init__(self):
        if not binary().exists():
            pytest.fail(f"{binary()} is missing: cargo build --bins, or set OMERO_SESSIOND_BIN")
        self.dir = tempfile.TemporaryDirectory(prefix="omero-sessiond-java-")
        self.data = os.path.join(self.dir.name, "data")
        for name, pw in USERS.items():
            run([binary(), "user", "add", name, "--password-stdin", "--data", self.data],
                input=pw, timeout=120)
        self.ports = {"tcp": free_port(), "ssl": free_port()}
        if serve_supports("--ws"):
            self.ports["ws"] = free_port()
            self.ports["wss"] = free_port()
        args = [binary(), "serve", "--data", self.data, "--https", "off"]
        for kind, port in self.ports.items():
            args += [f"--{kind}", f"127.0.0.1:{port}"]
        self.log = open(os.path.join(self.dir.name, "server.log"), "wb")
        self.proc = subprocess.Popen([str(a) for a in args], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for port in self.ports.values():
            self.wait_for(port)

    def wait_for(self, port):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"omero-sessiond exited with {self.proc.returncode}: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"omero-sessiond did not listen on {port}")

    def log_text(self):
        self.log.flush()
        return pathlib.Path(self.dir.name, "server.log").read_text(errors="replace")[-4000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.dir.cleanup()
