#!/usr/bin/env python3
"""Draws the benchmark charts as SVG from the JSON results of scripts/bench.

    scripts/plot.py [RESULTS_DIR] [OUTPUT_DIR]

RESULTS_DIR defaults to target/bench, OUTPUT_DIR to docs/benchmarks. Only the
Python standard library is used: the SVG is written by hand. Charts whose
results are missing are skipped.
"""

import glob
import json
import math
import os
import sys
from html import escape

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 48, 56
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#555555"]


def nice_ticks(low, high, count=5):
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw))
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 0.5:
        ticks.append(round(value, 10))
        value += step
    return ticks


def fmt(value):
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def chart(path, title, xlabel, ylabel, series, note=None, diagonal=False):
    """A line chart with markers. series: [(name, [(x, y), ...]), ...]."""
    points = [p for _, pts in series for p in pts]
    if not points:
        return False
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    xticks = nice_ticks(0, max(xs))
    yticks = nice_ticks(0, max(ys) * 1.08)
    x_max, y_max = xticks[-1], yticks[-1]
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def sx(x):
        return LEFT + plot_w * x / x_max

    def sy(y):
        return TOP + plot_h * (1 - y / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    for y in yticks:
        out.append(
            f'<line x1="{LEFT}" y1="{sy(y):.1f}" x2="{WIDTH - RIGHT}" y2="{sy(y):.1f}" '
            f'stroke="#e5e5e5"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{fmt(y)}</text>'
        )
    for x in xticks:
        out.append(
            f'<line x1="{sx(x):.1f}" y1="{TOP + plot_h}" x2="{sx(x):.1f}" y2="{TOP + plot_h + 4}" '
            f'stroke="#333"/>'
        )
        out.append(
            f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{fmt(x)}</text>'
        )
    out.append(
        f'<path d="M{LEFT},{TOP} V{TOP + plot_h} H{WIDTH - RIGHT}" fill="none" stroke="#333"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 14}" text-anchor="middle">{escape(xlabel)}</text>'
    )
    out.append(
        f'<text transform="translate(16,{TOP + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
    )
    if diagonal:
        top = min(x_max, y_max)
        out.append(
            f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(top):.1f}" y2="{sy(top):.1f}" '
            f'stroke="#999" stroke-dasharray="4 4"/>'
        )
    for i, (name, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        if len(pts) > 1:
            d = " ".join(
                f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts)
            )
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in pts if len(pts) <= 40 else []:
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(name)}: {fmt(x)}, {fmt(y)}</title></circle>"
            )
        ly = TOP + 8 + 18 * i
        out.append(
            f'<line x1="{LEFT + 12}" y1="{ly}" x2="{LEFT + 32}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2"/>'
        )
        out.append(f'<text x="{LEFT + 38}" y="{ly + 4}">{escape(name)}</text>')
    if note:
        out.append(
            f'<text x="{WIDTH - RIGHT}" y="{TOP - 8}" text-anchor="end" fill="#666">'
            f"{escape(note)}</text>"
        )
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {path}")
    return True


def load(results, pattern):
    found = []
    for path in sorted(glob.glob(os.path.join(results, pattern))):
        with open(path, encoding="utf-8") as f:
            found.append(json.load(f))
    return found


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
    output = sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks"
    os.makedirs(output, exist_ok=True)

    closed = load(results, "chat-closed-*.json")
    chart(
        os.path.join(output, "latency-vs-conversations.svg"),
        "Closed loop: latency vs conversations",
        "conversations (visitor–agent pairs)",
        "milliseconds",
        [
            ("e2e p50", [(r["pairs"], r["e2e"]["p50_ms"]) for r in closed]),
            ("e2e p99", [(r["pairs"], r["e2e"]["p99_ms"]) for r in closed]),
            ("round trip p99", [(r["pairs"], r["round_trip"]["p99_ms"]) for r in closed]),
        ],
    )
    chart(
        os.path.join(output, "throughput-vs-conversations.svg"),
        "Closed loop: round trips per second vs conversations",
        "conversations (visitor–agent pairs)",
        "round trips / s",
        [("round trips/s", [(r["pairs"], r["round_trips_per_sec"]) for r in closed])],
    )

    idle = load(results, "idle-*.json")
    series = []
    for hello_only, name in ((False, "visitors with a conversation"), (True, "hello only")):
        rss = []
        for r in idle:
            if bool(r.get("hello_only")) != hello_only:
                continue
            for edge in r["edges"]:
                rss.append((0, edge["rss_before_kib"] / 1024))
                rss.append((edge["connections"], edge["rss_after_kib"] / 1024))
        if rss:
            series.append((name, sorted(set(rss))))
    chart(
        os.path.join(output, "memory-vs-connections.svg"),
        "Edge resident memory (VmRSS) vs connections",
        "idle connections on one edge",
        "edge RSS (MiB)",
        series,
        note="one point per run; 0 = before connecting",
    )

    opened = load(results, "chat-open-*.json")
    chart(
        os.path.join(output, "throughput-vs-offered.svg"),
        "Open loop: delivered vs offered messages per second",
        "offered messages / s",
        "delivered messages / s",
        [
            (
                "delivered (arrived in the window)",
                [(r["offered_rate"], r.get("delivered_per_sec", r["messages_per_sec"])) for r in opened],
            )
        ],
        diagonal=True,
        note="dashed: delivered = offered",
    )
    chart(
        os.path.join(output, "latency-vs-offered.svg"),
        "Open loop: latency vs offered load (1,000 conversations)",
        "offered messages / s",
        "milliseconds (from intended send time)",
        [
            ("e2e p50", [(r["offered_rate"], r["e2e"]["p50_ms"]) for r in opened]),
            ("e2e p99", [(r["offered_rate"], r["e2e"]["p99_ms"]) for r in opened]),
        ],
    )

    for r in load(results, "archive-*.json"):
        rate = int(r["offered_rate"])
        samples = r["samples"]
        if not samples:
            continue
        s0, a0 = samples[0]["stream"], samples[0]["archived"]
        # An archiver started after the load (`archive-backlog-N`).
        late = r.get("archiver_startup_secs") is not None
        name = f"archive-backlog-{rate}" if late else f"archive-{rate}"
        started = ", archiver started after the load" if late else ""
        chart(
            os.path.join(output, f"{name}.svg"),
            f"Archive at {rate:,} msg/s offered{started}: records stored vs archived",
            "seconds since the load began",
            "records",
            [
                ("stored in the stream", [(s["t"], s["stream"] - s0) for s in samples]),
                ("archived in MongoDB", [(s["t"], s["archived"] - a0) for s in samples]),
            ],
        )


if __name__ == "__main__":
    main()
