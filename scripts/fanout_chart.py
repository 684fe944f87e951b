#!/usr/bin/env python3
"""Draw docs/fanout.png: fan-out wall time against the number of nodes.

Reads the figures measured by hand on a ``scripts/cluster`` (the commands are
in docs/performance.md, "Chain fan-out") from docs/perf/fanout.json:
``{"file_mib": 256, "rate": "200mbit", "one_node_s": S,
"series": {"chain": {"N": seconds, ...}, "star": {...}, ...}}``, and plots
each series with the time one node takes and N times it for reference.
Needs the bench extras (``pip install -e '.[bench]'``, matplotlib).

    .venv/bin/python scripts/fanout_chart.py [--data docs/perf/fanout.json] [--out docs/fanout.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def draw(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=100)
    styles = {"chain": ("o-", "tab:green"), "star": ("s-", "tab:red"), "rsync each": ("^--", "tab:gray")}
    most = 1
    for name, points in data["series"].items():
        ns = sorted(int(n) for n in points)
        most = max(most, *ns)
        marker, color = styles.get(name, ("x-", None))
        ax.plot(ns, [points[str(n)] for n in ns], marker, color=color, label=name)
    one = data["one_node_s"]
    ax.plot([1, most], [one, one * most], ":", color="tab:red", linewidth=0.8, label="N × one node")
    ax.axhline(one, color="tab:green", linestyle=":", linewidth=0.8, label="one node")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("nodes (N)")
    ax.set_ylabel("wall time (s)")
    ax.set_xticks(sorted({1, *(int(n) for s in data["series"].values() for n in s)}))
    ax.set_title(f"{data['file_mib']} MiB to N nodes, links {data['rate']}", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # A palette PNG keeps a line chart to a few tens of KB.
    fig.savefig(out, format="png", pil_kwargs={"optimize": True})
    plt.close(fig)
    try:
        from PIL import Image

        with Image.open(out) as img:
            img.convert("RGB").quantize(colors=32).save(out, optimize=True)
    except ImportError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "docs" / "perf" / "fanout.json")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "fanout.png")
    args = parser.parse_args()
    draw(json.loads(args.data.read_text()), args.out)
    print(f"{args.out}: {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
