"""The benchmark's output: per-case medians, the Markdown table and the PNG
bar charts (matplotlib, the ``bench`` extra)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from _benchlib import Run, med, span

# The sync case's rows over a tree of small files: files/s, as in the small case.
SYNC_TREE = ("sync unchanged", "sync unchanged -c", "sync one changed")


def summarize(results: list[Run]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        out.setdefault(r.case, {}).setdefault(r.tool, {})
    for case, tools in out.items():
        for tool in tools:
            rs = [r for r in results if r.case == case and r.tool == tool]
            tools[tool] = {
                "runs": len(rs),
                "wall": med([r.wall for r in rs]),
                "mbps": med([r.nbytes / r.wall / 1e6 for r in rs]),
                "fps": med([r.nfiles / r.wall for r in rs]),
                "client_rss_mib": med([r.client.rss_kib / 1024 for r in rs]),
                "server_rss_mib": med([r.server.rss_kib / 1024 for r in rs]),
            }
    return out


def table_rows(results: list[Run], case: str, per_file: bool) -> list[str]:
    tools = list(dict.fromkeys(r.tool for r in results if r.case == case))
    rows = []
    base = {t: med([r.wall for r in results if r.case == case and r.tool == t]) for t in tools}
    for tool in tools:
        rs = [r for r in results if r.case == case and r.tool == tool]
        walls = [r.wall for r in rs]
        rate = [r.nfiles / r.wall for r in rs] if per_file else [r.nbytes / r.wall / 1e6 for r in rs]
        first = next(iter(base.values()))
        ratio = "" if tool.startswith("zfile") and tool != "zfile (baseline)" else f"{first / base[tool]:.2f}"
        rows.append(
            f"| {case} | {tool} | {len(rs)} | {span(walls, '.2f')} | {span(rate, ',.0f' if per_file else '.0f')} "
            f"| {span([r.client.cpu for r in rs], '.2f')} | {span([r.server.cpu for r in rs], '.2f')} "
            f"| {span([r.client.rss_kib / 1024 for r in rs], '.0f')} "
            f"| {span([r.server.rss_kib / 1024 for r in rs], '.0f')} | {ratio} |"
        )
    return rows


def markdown(results: list[Run], notes: list[str], header: str) -> str:
    lines = [
        header,
        "",
        "Medians, (min–max) over the runs.  MB/s = 10^6 bytes/s; CPU = user + system seconds; "
        "RSS = peak resident set size (MiB) from `/usr/bin/time -v`.  "
        '"zfile wall ÷ peer" < 1 means zfile was faster.',
        "",
        "| case | tool | runs | wall s | MB/s or files/s | client CPU s | server CPU s "
        "| client RSS MiB | server RSS MiB | zfile wall ÷ peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in dict.fromkeys(r.case for r in results):
        lines += table_rows(results, case, per_file="small" in case or case in SYNC_TREE)
    lines.append("")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def charts(results: list[Run], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    summary = summarize(results)

    def bar(name: str, title: str, ylabel: str, values: dict[str, float]) -> None:
        if not values:
            return
        fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=80)
        values = {k.replace("zfile (baseline)", "baseline"): v for k, v in values.items()}
        labels = list(values)
        colors = [
            "#1f77b4" if k.startswith("zfile") else "#9ecae1" if k.startswith("baseline") else "#999999" for k in labels
        ]
        ax.bar(range(len(labels)), [values[k] for k in labels], color=colors)
        # Wrapped, so that long names ("disk (dd oflag=direct)") do not run into their neighbours.
        ax.set_xticks(range(len(labels)), [textwrap.fill(k, 14) for k in labels])
        for i, k in enumerate(labels):
            ax.text(i, values[k], f"{values[k]:,.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        made.append(path)

    large = summary.get("large", {})
    bar("large-mbps", "large file: MB/s (median, higher is better)", "MB/s", {k: v["mbps"] for k, v in large.items()})
    rss = {f"{k}\nclient": v["client_rss_mib"] for k, v in large.items()}
    rss.update({f"{k}\nserver": v["server_rss_mib"] for k, v in large.items()})
    bar("large-rss", "large file: peak RSS per side (MiB, lower is better)", "MiB", dict(sorted(rss.items())))
    small = summary.get("small", {})
    bar(
        "small-fps",
        "4 KiB files: files/s (median, higher is better)",
        "files/s",
        {k: v["fps"] for k, v in small.items()},
    )
    get = summary.get("get", {})
    title = "large file pulled: MB/s (median, higher is better)"
    bar("get-mbps", title, "MB/s", {k: v["mbps"] for k, v in get.items()})
    mem = {}
    for case, tools in summary.items():
        if case.startswith("memory"):
            size = case.split(" ", 1)[1]
            mem[f"daemon\n{size}"] = tools["zfile send"]["server_rss_mib"]
            mem[f"send\n{size}"] = tools["zfile send"]["client_rss_mib"]
            mem[f"get\n{size}"] = tools["zfile get"]["client_rss_mib"]
    bar("memory", "zfile peak RSS by file size (MiB)", "MiB", mem)
    return made
