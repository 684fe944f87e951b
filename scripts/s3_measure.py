"""Figures of the S3 backend against a running S3 endpoint (docs/s3.md).

    python scripts/s3_measure.py commit ENDPOINT SIZE_MIB
        The commit's S3 requests for a SIZE_MIB multipart upload, timed:
        the former one (CompleteMultipartUpload at a staging key, CopyObject
        to the file's key, DeleteObject) and the current one
        (CompleteMultipartUpload at the file's key, CopyObject onto itself
        with MetadataDirective REPLACE, DeleteObject of the state object).
    python scripts/s3_measure.py send ENDPOINT SIZE_MIB [--part-mib N] [--in-flight N]
        A zfile daemon on s3://BUCKET/<fresh prefix>/ at ENDPOINT; `zfile
        send` of a SIZE_MIB file of random bytes: wall time, the daemon's
        CPU seconds and peak RSS (VmHWM); then the same file uploaded by
        aiobotocore straight to the store (same part size and parts in
        flight): wall time.  Credentials from the AWS variables.

Wall times on a shared machine are noisy: the script prints the load
average with each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

MiB = 1 << 20
BUCKET = os.environ.get("ZFILE_MEASURE_BUCKET", "zfile-test")


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


async def _client(endpoint: str):
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        retries={"total_max_attempts": 1},
        max_pool_connections=16,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
        read_timeout=300,
    )
    return get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


async def _multipart(s3, key: str, size: int, part: int, in_flight: int, source: Path | None = None) -> tuple:
    """Upload ``size`` bytes (random, or ``source``'s) as parts, each body
    sent in place as the backend sends it; returns (upload id, parts)."""
    from zfile.store.s3.client import BufferBody

    upload_id = (await s3.create_multipart_upload(Bucket=BUCKET, Key=key))["UploadId"]
    slots = asyncio.Semaphore(in_flight)
    block = os.urandom(part)
    fd = os.open(source, os.O_RDONLY) if source else None

    async def one(n: int, start: int) -> dict:
        async with slots:
            length = min(part, size - start)
            if fd is not None:
                body = BufferBody(await asyncio.to_thread(os.pread, fd, length, start))
            else:
                body = BufferBody(memoryview(block)[:length])
            got = await s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=n, Body=body)
            return {"PartNumber": n, "ETag": got["ETag"]}

    try:
        parts = await asyncio.gather(*(one(n, s) for n, s in enumerate(range(0, size, part), 1)))
    finally:
        if fd is not None:
            os.close(fd)
    return upload_id, parts


async def commit(endpoint: str, size: int) -> None:
    prefix = f"measure-{uuid.uuid4().hex[:8]}/"
    async with await _client(endpoint) as s3:
        # Former: parts at a staging key, copied to the file's key.
        staging, final = prefix + ".zfile/uploads/x.blake3", prefix + "old.bin"
        upload_id, parts = await _multipart(s3, staging, size, 8 * MiB, 3)
        t0 = time.monotonic()
        await s3.complete_multipart_upload(
            Bucket=BUCKET, Key=staging, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        t1 = time.monotonic()
        await s3.copy_object(
            Bucket=BUCKET,
            Key=final,
            CopySource={"Bucket": BUCKET, "Key": staging},
            Metadata={"zfile-digest": "00"},
            MetadataDirective="REPLACE",
        )
        t2 = time.monotonic()
        await s3.delete_object(Bucket=BUCKET, Key=staging)
        t3 = time.monotonic()
        print(f"former commit, {size // MiB} MiB: complete {t1 - t0:.2f} s, copy {t2 - t1:.2f} s, "
              f"delete {t3 - t2:.2f} s, total {t3 - t0:.2f} s ({load()})")  # fmt: skip
        # Current: parts at the file's key, the entry written onto itself.
        final = prefix + "new.bin"
        upload_id, parts = await _multipart(s3, final, size, 8 * MiB, 3)
        await s3.put_object(Bucket=BUCKET, Key=prefix + ".zfile/uploads/y.blake3", Body=upload_id.encode())
        t0 = time.monotonic()
        await s3.complete_multipart_upload(
            Bucket=BUCKET, Key=final, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        t1 = time.monotonic()
        await s3.copy_object(
            Bucket=BUCKET,
            Key=final,
            CopySource={"Bucket": BUCKET, "Key": final},
            Metadata={"zfile-digest": "00"},
            MetadataDirective="REPLACE",
        )
        t2 = time.monotonic()
        await s3.delete_object(Bucket=BUCKET, Key=prefix + ".zfile/uploads/y.blake3")
        t3 = time.monotonic()
        print(f"current commit, {size // MiB} MiB: complete {t1 - t0:.2f} s, self-copy {t2 - t1:.2f} s, "
              f"delete {t3 - t2:.2f} s, total {t3 - t0:.2f} s ({load()})")  # fmt: skip
        for key in (prefix + "old.bin", final):
            await s3.delete_object(Bucket=BUCKET, Key=key)


def _cpu_and_hwm(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmHWM:"))  # fmt: skip
    return cpu, hwm * 1024


def send(endpoint: str, size: int, part: int, in_flight: int, keep: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="zfile-s3-measure-"))
    src = root / "big.bin"
    with open(src, "wb") as f:
        block = os.urandom(64 * MiB)
        for start in range(0, size, len(block)):
            f.write(block[: min(len(block), size - start)] if start else os.urandom(min(len(block), size)))
    location = f"s3://{BUCKET}/measure-{uuid.uuid4().hex[:8]}/"
    port = 20000 + os.getpid() % 20000
    bind = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "ZFILE_CONFIG": os.devnull}
    log = open(root / "daemon.log", "wb")  # noqa: SIM115 (the daemon writes it until the end)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "zfile", "serve", "--bind", bind, "--root", str(root / "unused"),
         "--store", location, "--s3-endpoint", endpoint], stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b"listening on" not in (root / "daemon.log").read_bytes():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit((root / "daemon.log").read_text())
            time.sleep(0.1)
        cpu0, _ = _cpu_and_hwm(daemon.pid)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "zfile", "send", str(src), "--to", bind, "--timeout", "60"],
                       check=True, env=env)  # fmt: skip
        wall = time.monotonic() - t0
        cpu1, hwm = _cpu_and_hwm(daemon.pid)
        print(f"zfile send, {size // MiB} MiB: {wall:.1f} s, {size / wall / 1e6:.0f} MB/s, daemon CPU "
              f"{cpu1 - cpu0:.1f} s, daemon VmHWM {hwm / MiB:.0f} MiB ({load()})")  # fmt: skip
    finally:
        daemon.terminate()
        daemon.wait(60)
        log.close()

    async def direct() -> float:
        async with await _client(endpoint) as s3:
            key = location.removeprefix(f"s3://{BUCKET}/") + "direct.bin"
            t0 = time.monotonic()
            upload_id, parts = await _multipart(s3, key, size, part, in_flight, src)
            await s3.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            wall = time.monotonic() - t0
            if not keep:
                await s3.delete_object(Bucket=BUCKET, Key=key)
                await s3.delete_object(Bucket=BUCKET, Key=location.removeprefix(f"s3://{BUCKET}/") + "big.bin")
            return wall

    wall = asyncio.run(direct())
    print(f"aiobotocore straight to the store, {size // MiB} MiB ({part // MiB} MiB parts, {in_flight} in flight): "
          f"{wall:.1f} s, {size / wall / 1e6:.0f} MB/s ({load()})")  # fmt: skip
    src.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["commit", "send"])
    p.add_argument("endpoint")
    p.add_argument("size_mib", type=int)
    p.add_argument("--part-mib", type=int, default=8)
    p.add_argument("--in-flight", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the objects written (default: delete them)")
    a = p.parse_args()
    if a.what == "commit":
        asyncio.run(commit(a.endpoint, a.size_mib * MiB))
    else:
        send(a.endpoint, a.size_mib * MiB, a.part_mib * MiB, a.in_flight, a.keep)


if __name__ == "__main__":
    main()
