"""The ``s3`` case of ``scripts/bench``: zfile storing into SeaweedFS (the S3
backend) against uploading the same bytes straight to SeaweedFS with the
client library the backend uses (aiobotocore, docs/s3.md), with the same
part size and concurrency as the backend.

- s3 large: one 1 GiB [256 MiB] file: ``zfile send`` to a daemon with
  ``--store s3://...`` against a multipart upload of 8 MiB parts, 3 in flight;
- s3 small: 1,000 files of 4 KiB: ``zfile send DIR`` against 32 PutObjects
  in flight;
- s3 memory: the daemon's peak RSS storing 1 GiB and 8 GiB [256 MiB, 1 GiB].

The direct client runs as its own process (``python scripts/_bench_s3.py
big|small ...``) under ``/usr/bin/time -v`` like every other tool.  One
``weed mini`` on free loopback ports serves the whole case and is stopped at
its end.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 1 << 20
PART = 8 * MiB  # as zfile.store.s3.upload: MIN_PART, PARTS_IN_FLIGHT
PARTS_IN_FLIGHT = 3
PUTS_IN_FLIGHT = 32  # as zfile.store.s3.store.PUTS_IN_FLIGHT


from zfile.store.s3.client import BufferBody  # noqa: E402  (what the backend sends bodies with)


async def _client(endpoint: str):
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        max_pool_connections=64,
        request_checksum_calculation="when_required",
        s3={"addressing_style": "path"},
    )
    return get_session().create_client("s3", endpoint_url=endpoint, config=config)


async def direct_big(endpoint: str, bucket: str, key: str, src: Path) -> None:
    """A multipart upload of ``src``, read a part at a time (bounded memory)."""
    async with await _client(endpoint) as c:
        up = await c.create_multipart_upload(Bucket=bucket, Key=key)
        slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        parts: list[dict] = []

        async def send(n: int, body: bytearray) -> None:
            try:
                r = await c.upload_part(
                    Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=BufferBody(body)
                )
                parts.append({"PartNumber": n, "ETag": r["ETag"]})
            finally:
                slots.release()

        tasks = []
        with open(src, "rb") as f:
            n = 0
            while True:
                await slots.acquire()
                body = bytearray(PART)
                got = f.readinto(body)
                if not got:
                    slots.release()
                    break
                del body[got:]
                n += 1
                tasks.append(asyncio.create_task(send(n, body)))
        await asyncio.gather(*tasks)
        parts.sort(key=lambda p: p["PartNumber"])
        await c.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
        )


async def direct_small(endpoint: str, bucket: str, prefix: str, src: Path) -> None:
    async with await _client(endpoint) as c:
        slots = asyncio.Semaphore(PUTS_IN_FLIGHT)

        async def put(path: Path) -> None:
            async with slots:
                await c.put_object(Bucket=bucket, Key=prefix + path.name, Body=path.read_bytes())

        await asyncio.gather(*(put(p) for p in sorted(src.iterdir()) if p.is_file()))


def case_s3(b, large: Path, small: Path, memory: list[tuple[str, Path]], runs: int, results: list) -> list[str]:
    """Run the case (module docstring) with ``b`` (a _bench.Bench); append
    its Runs to ``results`` and return the goal lines."""
    from _benchlib import ZFILE, Run, Usage, digest_of, free_port, med, sync

    from tests.seaweed import BUCKET, SeaweedFS, aws_env

    env = {**os.environ, **aws_env()}
    weed = SeaweedFS(b.work / "seaweedfs")
    weed.start()
    seq = 0

    def zfile_send(case: str, src: Path, nbytes: int, nfiles: int) -> Run:
        nonlocal seq
        seq += 1
        location = f"s3://{BUCKET}/zfile-{seq}/"
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        cmd = [ZFILE, "serve", "--bind", endpoint, "--store", location, "--s3-endpoint", weed.endpoint]
        daemon = b.serve("zfile-s3", cmd, lambda p: "listening on" in p.log.read_text(errors="replace"), env=env)
        try:
            sync()
            wall, cu = b.client("zfile-s3", [ZFILE, "send", str(src), "--to", endpoint, "--quiet"], env=env)
        finally:
            su = b.retire(daemon)
        return Run("zfile", case, nbytes, nfiles, wall, cu, su)

    def direct(case: str, how: str, src: Path, nbytes: int, nfiles: int) -> Run:
        nonlocal seq
        seq += 1
        cmd = [sys.executable, str(Path(__file__)), how, weed.endpoint, BUCKET, f"direct-{seq}/", str(src)]
        sync()
        wall, cu = b.client("direct-s3", cmd, env=env)
        return Run("aiobotocore", case, nbytes, nfiles, wall, cu, Usage())  # no server of its own

    def check(case: str, key: str, want_digest: str | None, size: int) -> None:
        import botocore.session

        head = (
            botocore.session.Session()
            .create_client("s3", endpoint_url=weed.endpoint)
            .head_object(Bucket=BUCKET, Key=key)
        )
        if head["ContentLength"] != size or (want_digest and head["Metadata"].get("zfile-digest") != want_digest):
            raise RuntimeError(f"{case}: {key} in SeaweedFS does not match its source")

    os.environ.update(aws_env())
    failed: list[str] = []
    try:
        size = large.stat().st_size
        want = digest_of(large)
        files = [p for p in small.iterdir() if p.is_file()]
        small_bytes = sum(p.stat().st_size for p in files)
        for i in range(runs):
            r = zfile_send("s3 large", large, size, 1)
            check("s3 large", f"zfile-{seq}/{large.name}", want, size)
            d = direct("s3 large", "big", large, size, 1)
            check("s3 large", f"direct-{seq}/{large.name}", None, size)
            results += [r, d]
            print(f"  s3 large run {i + 1}/{runs}: zfile {size / r.wall / 1e6:6.1f} MB/s, "
                  f"aiobotocore {size / d.wall / 1e6:6.1f} MB/s", file=sys.stderr)  # fmt: skip
            r = zfile_send("s3 small", small, small_bytes, len(files))
            d = direct("s3 small", "small", small, small_bytes, len(files))
            results += [r, d]
            print(f"  s3 small run {i + 1}/{runs}: zfile {len(files) / r.wall:6.0f} files/s, "
                  f"aiobotocore {len(files) / d.wall:6.0f} files/s", file=sys.stderr)  # fmt: skip
        for label, src in memory:
            n = src.stat().st_size
            try:
                r = zfile_send(f"s3 memory {label}", src, n, 1)
                check(f"s3 memory {label}", f"zfile-{seq}/{src.name}", None, n)
            except RuntimeError as exc:  # reported with the figures, not lost with them
                failed.append(f"s3 memory {label}: failed: {str(exc).strip().splitlines()[-1]}")
                print(f"  {failed[-1]}", file=sys.stderr)
                continue
            results.append(r)
            print(f"  s3 memory {label}: daemon {r.server.rss_kib // 1024} MiB", file=sys.stderr)
    finally:
        weed.stop()

    def ratio(case: str) -> float | None:
        z = [r.wall for r in results if r.case == case and r.tool == "zfile"]
        d = [r.wall for r in results if r.case == case and r.tool == "aiobotocore"]
        return med(d) / med(z) if z and d else None

    lines = []
    if (big := ratio("s3 large")) is not None:
        lines.append(f"s3 large: zfile rate ÷ aiobotocore direct = {big:.2f} (goal ≥ 0.80)")
    if (many := ratio("s3 small")) is not None:
        lines.append(f"s3 small: zfile files/s ÷ aiobotocore direct = {many:.2f} (goal ≥ 0.80)")
    peaks = [(r.case, r.server.rss_kib / 1024) for r in results if r.case.startswith("s3 memory")]
    if peaks:
        lines.append("s3 memory: daemon peak RSS " + ", ".join(f"{c[10:]} {m:.0f} MiB" for c, m in peaks)
                     + " (goal ≤ 128 MiB)")  # fmt: skip
    return lines + failed


def main(argv: list[str]) -> int:
    how, endpoint, bucket, prefix, src = argv
    if how == "big":
        asyncio.run(direct_big(endpoint, bucket, prefix + Path(src).name, Path(src)))
    else:
        asyncio.run(direct_small(endpoint, bucket, prefix, Path(src)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
