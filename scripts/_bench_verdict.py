"""The benchmark's verdict lines: each goal, the ratio of medians that decides
it, the lowest and highest ratio the runs' min–max ranges allow, and "met" or
"NOT MET"; plus the small case's CPU per file of each side."""

from __future__ import annotations

from _benchlib import DISK_BUFFERED, DISK_DIRECT, SMALL_ONE, Run, med, ratio_span, span

# The goals, as ratios (zfile ÷ peer) or MiB.
SMALL_VS_RSYNC = 1.0  # files/s, at least
SMALL_VS_RSYNC_FSYNC = 3.0  # files/s, at least
LARGE_WALL_VS_RSYNC_FSYNC = 1.0  # wall, at most
GET_WALL_VS_RSYNC_FSYNC = 1.0  # wall, at most
GET_VS_SEND = 0.9  # MB/s, at least
CONCURRENT_VS_SINGLE = 0.8  # aggregate MB/s ÷ one stream's, at least
CURVE_VS_SCP = 1.2  # MB/s, at least
PEAK_RSS_MIB = 64  # each side, at most
FANOUT_CHAIN_VS_ONE = 1.3  # wall, at most
FANOUT_KILLED_VS_CHAIN = 1.5  # wall with one node killed ÷ without, at most
SYNC_UNCHANGED_VS_RSYNC = 1.5  # wall, at most
SYNC_CHECKSUM_VS_RSYNC = 1.0  # wall, at most
SYNC_CAT_VS_GET = 0.9  # MB/s, at least
SYNC_STDIN_VS_FILE = 0.9  # MB/s, at least


def judge(label: str, ratio: tuple[float, float, float], goal: float, at_least: bool) -> str:
    """``label = median (lowest–highest) (goal ≥|≤ goal): met|NOT MET``, with a
    warning when the runs' ranges would allow either answer."""
    mid, lo, hi = ratio
    met = mid >= goal if at_least else mid <= goal
    line = f"{label} = {mid:.2f} ({lo:.2f}–{hi:.2f}) (goal {'≥' if at_least else '≤'} {goal:.2f}): "
    line += "met" if met else "NOT MET"
    if lo < goal < hi:
        line += "; the runs' ranges straddle the goal"
    return line


def _runs(results: list[Run], case: str, tool: str) -> list[Run]:
    return [r for r in results if r.case == case and r.tool == tool]


def _walls(results: list[Run], case: str, tool: str) -> list[float]:
    return [r.wall for r in _runs(results, case, tool)]


def _rates(results: list[Run], case: str, tool: str) -> list[float]:
    """MB/s per run, or files/s for the small case."""
    if case == "small":
        return [r.nfiles / r.wall for r in _runs(results, case, tool)]
    return [r.nbytes / r.wall / 1e6 for r in _runs(results, case, tool)]


def _have(results: list[Run], case: str, *tools: str) -> bool:
    return all(_runs(results, case, t) for t in tools)


def cpu_per_file(results: list[Run], case: str = "small", one: str = SMALL_ONE) -> str | None:
    """CPU microseconds per file of each side of each tool in ``case``, median
    (min–max), beyond what the same tool used for the single file of case
    ``one`` (its start-up and connection); with no such run, everything."""
    sides = {"zfile": ("client", "daemon"), "zfile (baseline)": ("client", "daemon"), "scp": ("client", "sshd")}
    parts = []
    for tool in dict.fromkeys(r.tool for r in results if r.case == case):
        rs = _runs(results, case, tool)
        base = _runs(results, one, tool)
        c0 = med([r.client.cpu for r in base]) if base else 0.0
        s0 = med([r.server.cpu - r.server_before for r in base]) if base else 0.0
        n = [r.nfiles - (1 if base else 0) for r in rs]
        client, server = sides.get(tool, ("sender", "receiver"))
        c = span([(r.client.cpu - c0) / k * 1e6 for r, k in zip(rs, n, strict=True)], ",.0f")
        s = span([(r.server.cpu - r.server_before - s0) / k * 1e6 for r, k in zip(rs, n, strict=True)], ",.0f")
        parts.append(f"{tool} {client} {c} + {server} {s}" + ("" if base else " (start-up included)"))
    if not parts:
        return None
    return (f"{case}: CPU µs per file beyond a one-file run's (user + system; a server's counted from "
            f"the client's start): " + "; ".join(parts))  # fmt: skip


def goals(results: list[Run]) -> list[str]:
    """One line per goal the runs in ``results`` can decide, then information lines."""
    lines: list[str] = []
    if _have(results, "small", "zfile", "rsync"):
        z = _rates(results, "small", "zfile")
        lines.append(judge("small: zfile files/s ÷ rsync", ratio_span(z, _rates(results, "small", "rsync")),
                           SMALL_VS_RSYNC, at_least=True))  # fmt: skip
        if _have(results, "small", "rsync --fsync"):
            vs = ratio_span(z, _rates(results, "small", "rsync --fsync"))
            lines.append(judge("small: zfile files/s ÷ rsync --fsync", vs, SMALL_VS_RSYNC_FSYNC, at_least=True))
    per_file = cpu_per_file(results)
    if per_file:
        lines.append(per_file)
    disk = _rates(results, "large", DISK_DIRECT)
    if _have(results, "large", "zfile", "rsync --fsync"):
        z = _walls(results, "large", "zfile")
        line = judge("large send: zfile wall ÷ rsync --fsync", ratio_span(z, _walls(results, "large", "rsync --fsync")),
                     LARGE_WALL_VS_RSYNC_FSYNC, at_least=False)  # fmt: skip
        if _have(results, "large", "rsync"):
            line += f"; ÷ plain rsync = {med(z) / med(_walls(results, 'large', 'rsync')):.2f}"
        if _have(results, "large", "socat"):
            line += f"; ÷ socat = {med(z) / med(_walls(results, 'large', 'socat')):.2f}"
        lines.append(line)
    if disk:
        line = (f"disk: durable write rate in this run (dd oflag=direct conv=fsync, 16 MiB blocks) "
                f"{span(disk, ',.0f')} MB/s, the limit for durable large transfers")  # fmt: skip
        buffered = _rates(results, "large", DISK_BUFFERED)
        if buffered:
            line += f" (through the page cache, dd conv=fsync: {span(buffered, ',.0f')} MB/s)"
        if _have(results, "large", "zfile"):
            line += f"; zfile send reached {med(_rates(results, 'large', 'zfile')) / med(disk):.0%} of it"
        if _have(results, "get", "zfile get"):
            line += f", zfile get {med(_rates(results, 'get', 'zfile get')) / med(disk):.0%}"
        lines.append(line)
    if _have(results, "get", "zfile get", "rsync --fsync"):
        vs = ratio_span(_walls(results, "get", "zfile get"), _walls(results, "get", "rsync --fsync"))
        lines.append(judge("get: zfile get wall ÷ rsync --fsync pulling", vs, GET_WALL_VS_RSYNC_FSYNC, at_least=False))
    if _have(results, "get", "zfile get") and _have(results, "large", "zfile"):
        vs = ratio_span(_rates(results, "get", "zfile get"), _rates(results, "large", "zfile"))
        lines.append(judge("get: zfile get MB/s ÷ zfile send (large case)", vs, GET_VS_SEND, at_least=True))
    if _have(results, "concurrent", "zfile") and _have(results, "large", "zfile"):
        vs = ratio_span(_rates(results, "concurrent", "zfile"), _rates(results, "large", "zfile"))
        daemon = max(r.server.rss_kib for r in _runs(results, "concurrent", "zfile")) / 1024
        lines.append(judge("concurrent: all verified; aggregate MB/s ÷ one stream (large case)", vs,
                           CONCURRENT_VS_SINGLE, at_least=True) + f"; daemon peak RSS {daemon:.0f} MiB")  # fmt: skip
    if _have(results, "encrypted", "zfile+CURVE", "scp"):
        vs = ratio_span(_rates(results, "encrypted", "zfile+CURVE"), _rates(results, "encrypted", "scp"))
        lines.append(judge("encrypted: zfile+CURVE MB/s ÷ scp (aes128-gcm)", vs, CURVE_VS_SCP, at_least=True))
    lines += _memory(results)
    lines += _fanout(results)
    lines += _sync(results)
    return lines


def _sync(results: list[Run]) -> list[str]:
    lines = []
    for case, z, peer, goal in (("sync unchanged", "zfile send", "rsync -a", SYNC_UNCHANGED_VS_RSYNC),
                                ("sync unchanged -c", "zfile send -c", "rsync -a -c", SYNC_CHECKSUM_VS_RSYNC),
                                ("sync one changed", "zfile send", "rsync -a", None)):  # fmt: skip
        if not _have(results, case, z, peer):
            continue
        vs = ratio_span(_walls(results, case, z), _walls(results, case, peer))
        if goal is None:
            lines.append(f"{case}: {z} wall ÷ {peer} = {vs[0]:.2f} ({vs[1]:.2f}–{vs[2]:.2f}) (no goal)")
        else:
            lines.append(judge(f"{case}: {z} wall ÷ {peer}", vs, goal, at_least=False))
    if _have(results, "sync cat", "zfile cat", "zfile get"):
        vs = ratio_span(_rates(results, "sync cat", "zfile cat"), _rates(results, "sync cat", "zfile get"))
        lines.append(judge("sync cat: zfile cat > /dev/null MB/s ÷ zfile get", vs, SYNC_CAT_VS_GET, at_least=True))
    if _have(results, "sync stdin", "zfile send - (from cat)", "zfile send FILE"):
        vs = ratio_span(_rates(results, "sync stdin", "zfile send - (from cat)"),
                        _rates(results, "sync stdin", "zfile send FILE"))  # fmt: skip
        lines.append(judge("sync stdin: cat FILE into zfile send - MB/s ÷ zfile send FILE", vs, SYNC_STDIN_VS_FILE,
                           at_least=True))  # fmt: skip
    return lines


def _memory(results: list[Run]) -> list[str]:
    sizes = [r.case for r in results if r.case.startswith("memory ") and r.tool == "zfile send"]
    if not sizes:
        return []
    parts, worst = [], 0.0
    for case in dict.fromkeys(sizes):
        send, get = _runs(results, case, "zfile send"), _runs(results, case, "zfile get")
        daemon = max(r.server.rss_kib for r in send + get) / 1024
        s = max(r.client.rss_kib for r in send) / 1024
        g = max((r.client.rss_kib for r in get), default=0) / 1024
        worst = max(worst, daemon, s, g)
        parts.append(f"{case.split(' ', 1)[1]}: daemon {daemon:.0f}, send {s:.0f}, get {g:.0f}")
    verdict = "met" if worst <= PEAK_RSS_MIB else "NOT MET"
    return [f"memory: peak RSS MiB, {'; '.join(parts)} (goal ≤ {PEAK_RSS_MIB} each side): {verdict}"]


def _fanout(results: list[Run]) -> list[str]:
    fan = {r.tool: r for r in results if r.case == "fanout"}
    if "zfile x1" not in fan:
        return []
    one = _walls(results, "fanout", "zfile x1")
    lines = []
    chain = next((t for t in fan if t.startswith("zfile chain x") and "killed" not in t), None)
    if chain:
        lines.append(judge(f"fanout: {chain} wall ÷ zfile to 1 node", ratio_span(_walls(results, "fanout", chain), one),
                           FANOUT_CHAIN_VS_ONE, at_least=False))  # fmt: skip
        killed = next((t for t in fan if "killed" in t), None)
        if killed:
            vs = ratio_span(_walls(results, "fanout", killed), _walls(results, "fanout", chain))
            lines.append(judge(f"fanout: {killed} (the others committed) wall ÷ no failure", vs,
                               FANOUT_KILLED_VS_CHAIN, at_least=False))  # fmt: skip
    lines += [f"fanout: {tool} wall ÷ zfile to 1 node = {med(_walls(results, 'fanout', tool)) / med(one):.2f} "
              "(expected near the node count)"
              for tool in fan if tool != "zfile x1" and not tool.startswith("zfile chain")]  # fmt: skip
    peak = max(r.server.rss_kib for r in results if r.case == "fanout") / 1024
    return [*lines, f"fanout: largest zfile daemon peak RSS {peak:.0f} MiB"]
