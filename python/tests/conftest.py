"""Fixtures for the ccmount Python tests: plaintext models, trees encrypted by the real
gocryptfs (mounted, filled, unmounted) or by `ccmount encrypt`, and the test KBS.

Binaries come from the environment (scripts/test-python.sh sets them) or target/debug:
CCMOUNT_BIN (`ccmount`), TEST_KBS_BIN (`test-kbs`). Every wait is bounded.
"""

import os
import queue
import threading
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PASSWORD = b"python test password \xe2\x9c\x93\n"


def _bin(env, name):
    p = os.environ.get(env)
    if p:
        return Path(p)
    for profile in ("debug", "release"):
        c = REPO / "target" / profile / name
        if c.exists():
            return c
    return None


def ccmount_bin():
    return _bin("CCMOUNT_BIN", "ccmount")


def test_kbs_bin():
    return _bin("TEST_KBS_BIN", "test-kbs")


def run(cmd, timeout=120, **kw):
    out = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
    if out.returncode != 0:
        raise AssertionError(f"{cmd}: exit {out.returncode}: {out.stderr.decode(errors='replace')}")
    return out


def gocryptfs_skip_reason():
    if shutil.which("gocryptfs") is None:
        return "gocryptfs is not installed"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None and shutil.which("fusermount") is None:
        return "fusermount is missing"
    return None


def _mounted(mnt):
    want = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == want for line in f)


def _unmount(mnt):
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    for _ in range(50):
        if not _mounted(mnt):
            return
        subprocess.run([tool, "-u", str(mnt)], capture_output=True, timeout=30)
        time.sleep(0.1)
    subprocess.run([tool, "-uz", str(mnt)], capture_output=True, timeout=30)


def encrypt_with_gocryptfs(plain, cipher, passfile, extra=()):
    """A tree made by the real gocryptfs (-init -scryptn 10, as tests/src/gocryptfs.rs):
    mounted, the plaintext copied in, unmounted."""
    cipher.mkdir(parents=True)
    run(["gocryptfs", "-init", "-q", "-scryptn", "10", "-passfile", str(passfile), *extra, str(cipher)])
    mnt = cipher.parent / (cipher.name + ".mnt")
    mnt.mkdir()
    run(["gocryptfs", "-q", "-passfile", str(passfile), str(cipher), str(mnt)], timeout=60)
    try:
        deadline = time.monotonic() + 10
        while not _mounted(mnt):
            assert time.monotonic() < deadline, "the gocryptfs mount did not appear"
            time.sleep(0.02)
        shutil.copytree(plain, mnt, dirs_exist_ok=True, symlinks=True)
    finally:
        _unmount(mnt)
    mnt.rmdir()


def encrypt_with_ccmount(plain, cipher, passfile):
    bin = ccmount_bin()
    if bin is None:
        pytest.skip("the ccmount binary is not built (cargo build -p ccmount)")
    run([str(bin), "encrypt", str(plain), str(cipher), "--passfile", str(passfile), "--scryptn", "10"])


@pytest.fixture
def passfile(tmp_path):
    p = tmp_path / "pass"
    p.write_bytes(PASSWORD)
    return p


@pytest.fixture
def make_tree(tmp_path, passfile):
    """make_tree(plain_dir, tool="gocryptfs"|"ccmount") -> cipher dir."""
    counter = [0]

    def make(plain, tool="gocryptfs"):
        counter[0] += 1
        cipher = tmp_path / f"cipher{counter[0]}"
        if tool == "gocryptfs":
            reason = gocryptfs_skip_reason()
            if reason:
                pytest.skip(reason)
            encrypt_with_gocryptfs(plain, cipher, passfile)
        else:
            encrypt_with_ccmount(plain, cipher, passfile)
        return cipher

    return make


class Kbs:
    """A test-kbs process on 127.0.0.1 (stopped by the fixture)."""

    def __init__(self, proc, url, ca):
        self.proc, self.url, self.ca = proc, url, ca


@pytest.fixture
def start_kbs(tmp_path):
    procs = []

    def start(resources):
        bin = test_kbs_bin()
        if bin is None:
            pytest.skip("the test-kbs binary is not built (cargo build -p test-kbs)")
        args = [str(bin), "--listen", "127.0.0.1:0", "--allow-sample"]
        for i, (path, value) in enumerate(resources.items()):
            f = tmp_path / f"kbs-resource-{i}"
            f.write_bytes(value)
            args += ["--resource", f"{path}=@{f}"]
        ca = tmp_path / "kbs-ca.pem"
        log = tmp_path / "kbs.log"
        args += ["--ca-out", str(ca)]
        with open(log, "wb") as err:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        procs.append(proc)
        # It prints its URL on stdout once serving (after writing the CA): wait for that
        # line, at most 30 s.
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
        try:
            url = lines.get(timeout=30).decode().strip()
        except queue.Empty:
            url = ""
        if not url:
            raise AssertionError(f"test-kbs printed no URL within 30 s: {log.read_text(errors='replace')}")
        return Kbs(proc, url, ca)

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def pytest_report_header(config):
    lines = [f"ccmount binary: {ccmount_bin()}", f"test-kbs binary: {test_kbs_bin()}"]
    try:
        import torch  # noqa: F401

        lines.append(f"torch: {torch.__version__}")
    except ImportError:
        lines.append("torch: not installed (torch tests skip)")
    return lines
