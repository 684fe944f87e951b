"""The benchmark behind ``scripts/bench``: zfile against rsync, scp and socat.

Every server is started for one run under ``/usr/bin/time -v`` (peak RSS and
CPU seconds of each side), stopped after it, and its destination deleted;
runs alternate between tools (A B C D A B C D ...).  Nothing is tuned against
a guarantee: zfile fsyncs and verifies every file as in production, and the
durable comparisons are ``rsync --fsync`` and ``dd conv=fsync``.  After
every run the destination is compared with the source (size, and BLAKE3 for
single files) outside the timed interval.  Under the table: the verdict of
every goal the run can decide (``_bench_verdict``), where the small case
wrote, and the seconds each case took.

Cases (``--quick`` sizes in brackets):

- large: one 1 GiB [256 MiB] random file to a new file on the real disk:
  ``zfile send``, ``rsync -W`` and ``rsync -W --fsync`` to an ``rsync
  --daemon`` module, ``scp`` to an sshd on a high port (aes128-gcm),
  ``socat -b 262144`` (the raw pipe), and ``dd oflag=direct conv=fsync`` of
  the same bytes (the disk's durable write rate in this run: the limit of a
  durable transfer), in full runs also ``dd conv=fsync`` (through the page
  cache);
- small: 10,000 [2,000] files of 4 KiB into a fresh directory on an ext4 made
  for the case (``_bench_fs``; the shared disk, with a warning, when that is
  not possible): ``zfile send DIR``, ``rsync -a -W`` with and without
  ``--fsync``, ``scp -r``; CPU per file of each side;
- get: the large file pulled into a new directory on the real disk: ``zfile
  get`` from a daemon that stored it, ``rsync -W --fsync`` from a read-only
  module, ``scp`` from the sshd;
- concurrent: 100 clients x 10 MiB [2 MiB] at once against one daemon;
- memory: zfile's peak RSS of each side for 1 GiB and 8 GiB [256 MiB, 1 GiB]
  (send and get);
- encrypted: zfile with CURVE against scp, when this zfile has CURVE
  (``zfile keygen``); skipped with a line saying so otherwise;
- http: zfile's HTTP front against nginx and ``python -m http.server``
  (``_bench_http``);
- fanout (only when asked for, ``--cases fanout``; needs root): one 256 MiB
  [64 MiB] file to 8 nodes of a ``scripts/cluster`` (``_bench_fanout``);
- s3: zfile with the S3 backend into SeaweedFS against aiobotocore straight
  to it (``_bench_s3``; needs the test extra for ``weed``);
- sync: re-sync of an unchanged tree of 10,000 [2,000] 4 KiB files in 20
  directories (``zfile send`` against ``rsync -a``, and with ``-c`` against
  ``rsync -a -c``), of the tree with one file changed, ``zfile cat`` of the
  large file to /dev/null against ``zfile get``, and ``cat FILE | zfile send
  -`` against ``zfile send FILE`` (``_bench_sync``).

Apart from fanout, everything runs on 127.0.0.1.  Wall time is the client
command's (for socat: until the receiving socat has exited, as it alone writes
the file).  MB/s are 10**6 bytes per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from _bench_cases import case_concurrent, case_encrypted, case_get, case_large, case_memory, case_small
from _bench_report import charts, markdown, summarize
from _bench_tools import Bench
from _bench_verdict import goals
from _benchlib import ROOT, GiB, MiB, Run, make_random, make_repeated, make_small

DEFAULT_CASES = "large,small,get,concurrent,memory,encrypted,http,s3,sync"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB / 2,000 files, fewer runs")
    ap.add_argument("--runs", type=int, help="runs per tool of the large, get and sync cases (default 5, quick 3)")
    ap.add_argument(
        "--cases",
        default=DEFAULT_CASES,
        help=f"comma-separated subset of {DEFAULT_CASES}; also fanout (root only, not in the default)",
    )
    ap.add_argument(
        "--small-fs",
        choices=("fresh", "shared"),
        default="fresh",
        help="where the small case writes: a fresh ext4 on a loop device (default; root) or the shared disk",
    )
    ap.add_argument("--out", default=str(ROOT / "bench-results"), help="where the table and charts go")
    ap.add_argument("--workdir", help="scratch directory for data (default: a new one under /var/tmp)")
    ap.add_argument(
        "--baseline",
        metavar="EXE",
        help="another zfile executable (e.g. an older build) to run as one more tool in the large and small cases",
    )
    args = ap.parse_args()
    unknown = set(args.cases.split(",")) - set(DEFAULT_CASES.split(",")) - {"fanout"}
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    cases = set(args.cases.split(","))
    quick = args.quick
    runs = args.runs or (3 if quick else 5)
    small_runs = 2 if quick else 3
    large_size = 256 * MiB if quick else GiB
    small_count = 2_000 if quick else 10_000
    conc_size = 2 * MiB if quick else 10 * MiB
    fan_size = 64 * MiB if quick else 256 * MiB
    mem_sizes = [("256 MiB", 256 * MiB), ("1 GiB", GiB)] if quick else [("1 GiB", GiB), ("8 GiB", 8 * GiB)]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="zfile-bench-", dir="/var/tmp"))
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    b = Bench(work, out)
    b.baseline = args.baseline
    results: list[Run] = []
    notes: list[str] = []
    began = time.monotonic()
    load_start = os.getloadavg()[0]

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)

    durations: dict[str, float] = {}
    failed: list[str] = []

    @contextmanager
    def took(case: str) -> Iterator[None]:
        """Time one case; a case that fails is reported and the others still run."""
        t0 = time.monotonic()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - one case's failure must not lose the others' results
            traceback.print_exc()
            b.cleanup()
            failed.append(case)
            first = str(exc).strip().splitlines()
            note(f"{case}: FAILED ({type(exc).__name__}: {first[0] if first else ''}; the rest on stderr above)")
        finally:
            durations[case] = time.monotonic() - t0

    def note(text: str) -> None:
        if text:
            notes.append(text)
            print(f"bench: {text}", file=sys.stderr)

    try:
        print(f"bench: data in {data}", file=sys.stderr)
        large = make_random(data / f"random-{large_size // MiB}MiB.bin", large_size)
        if "large" in cases:
            with took("large"):
                print(f"bench: large ({large_size // MiB} MiB, {runs} runs per tool)", file=sys.stderr)
                case_large(b, large, runs, results, page_cache_row=not quick)
        if "small" in cases:
            with took("small"):
                print(f"bench: small ({small_count} x 4 KiB, {small_runs} runs per tool)", file=sys.stderr)
                src = make_small(data / f"small-{small_count}", small_count, 4096)
                note(case_small(b, src, small_runs, results, fresh_fs=args.small_fs == "fresh"))
        if "get" in cases:
            with took("get"):
                print(f"bench: get ({large_size // MiB} MiB pulled, {runs} runs per tool)", file=sys.stderr)
                case_get(b, large, runs, results)
        if "concurrent" in cases:
            with took("concurrent"):
                print(f"bench: concurrent (100 x {conc_size // MiB} MiB)", file=sys.stderr)
                case_concurrent(b, make_random(data / f"random-{conc_size // MiB}MiB.bin", conc_size), 100, results)
        if "memory" in cases:
            with took("memory"):
                print("bench: memory scaling", file=sys.stderr)
                files = []
                for label, size in mem_sizes:
                    path = data / f"mem-{size // MiB}MiB.bin"
                    files.append((label, large if size == large_size else make_repeated(path, large, size)))
                case_memory(b, files, results)
                for _, size in mem_sizes:
                    (data / f"mem-{size // MiB}MiB.bin").unlink(missing_ok=True)
        if "encrypted" in cases:
            with took("encrypted"):
                print("bench: encrypted", file=sys.stderr)
                note(case_encrypted(b, large, max(1, runs // 2 + 1) if not quick else 1, results))
        if "http" in cases:
            with took("http"):
                import _bench_http

                what = f"GET and PUT of {large_size // MiB} MiB, 100 x {conc_size // MiB} MiB"
                print(f"bench: http ({what})", file=sys.stderr)
                conc = make_random(data / f"random-{conc_size // MiB}MiB.bin", conc_size)
                _bench_http.case_http(b, large, max(1, runs // 2 + 1), conc, 100, results)
        if "fanout" in cases:
            with took("fanout"):
                from _bench_fanout import case_fanout

                fan_src = make_random(data / f"random-{fan_size // MiB}MiB.bin", fan_size)
                print(f"bench: fanout ({fan_size // MiB} MiB to 8 nodes at 200 Mbit/s)", file=sys.stderr)
                case_fanout(b, fan_src, 8, 1 if quick else 3, results)
        if "sync" in cases:
            with took("sync"):
                from _bench_sync import case_sync, make_tree

                print(f"bench: sync ({small_count} x 4 KiB in 20 directories; {large_size // MiB} MiB streamed)",
                      file=sys.stderr)  # fmt: skip
                tree = make_tree(data / f"tree-{small_count}", small_count, 4096)
                note(case_sync(b, tree, large, runs, max(1, runs // 2 + 1), results))
        if "s3" in cases:
            with took("s3"):
                from _bench_s3 import case_s3

                print("bench: s3 (zfile into SeaweedFS against aiobotocore straight to it)", file=sys.stderr)
                s3_small = make_small(data / "small-1000", 1000, 4096)
                s3_mem = []
                for label, size in mem_sizes:
                    path = data / f"mem-{size // MiB}MiB.bin"
                    s3_mem.append((label, large if size == large_size else make_repeated(path, large, size)))
                notes.extend(case_s3(b, large, s3_small, s3_mem, max(1, runs // 2 + 1), results))
                for _, size in mem_sizes:
                    if size != large_size:
                        (data / f"mem-{size // MiB}MiB.bin").unlink(missing_ok=True)
    except KeyboardInterrupt:
        print("bench: interrupted; reporting what finished", file=sys.stderr)
        notes.append("interrupted before every case finished")
    finally:
        b.cleanup()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    load = f"{load_start:.1f} at the start, " + " / ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (
        f"## zfile benchmark ({'quick' if quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"`scripts/bench{' --quick' if quick else ''}` on {os.cpu_count()} CPUs, loopback; "
        f"large = {large_size // MiB} MiB, small = {small_count:,} x 4 KiB, concurrent = 100 x {conc_size // MiB} MiB"
        + (f"; fanout = {fan_size // MiB} MiB to 8 nodes at 200 Mbit/s (scripts/cluster)" if "fanout" in cases else "")
        + f"; took {time.monotonic() - began:.0f} s; load average {load} at the end (1 / 5 / 15 min)."
    )
    notes.append("seconds per case: " + ", ".join(f"{case} {t:.0f}" for case, t in durations.items()))
    notes = goals(results) + notes
    if "http" in cases:
        import _bench_http

        notes = _bench_http.goals(summarize(results)) + notes
    text = markdown(results, notes, header)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    made = charts(results, out) if results else []
    print(text)
    print(f"bench: wrote {out / 'results.md'}, results.json and {len(made)} chart(s)", file=sys.stderr)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
