"""The report of a scenario run: one self-contained HTML file (inline SVG, no network, no
script) and the same data as JSON.

Role: draws a ``RunResult``: a header with the verdict and the counts; the expectations with
what was measured; a timeline with one lane per consumer showing when it acquired records,
accepted, released or rejected them, lost locks, had records released by a close, and when
records were archived - rejected apart from at the delivery limit, apart from what the broker
archived on its own (aborted, compacted, below the log start); a shaded band in each lane shows
how many records the consumer held; admin events (restarts, config changes, resets) cut across
all lanes. Below: the delivery-count histogram, how records ended, and throughput and in-flight
records over time. Marks carry SVG <title> tooltips.

Events are binned per lane into pixel columns, so a million-record run draws as fast as a
ten-record one. Writes files only where it is told.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Final

from sharegroup.scenario import trace as tr
from sharegroup.scenario.expect import RunResult, percentile

WIDTH: Final = 1240
LEFT: Final = 150  # room for lane labels
RIGHT: Final = 20
BINS: Final = 360
MAX_JSON_EVENTS: Final = 20_000

# Lane rows (top to bottom) and the kinds drawn on each, with colours and legend labels.
KINDS: Final[dict[str, tuple[int, str, str]]] = {
    tr.ACQUIRE: (0, "#4C78A8", "acquired"),
    tr.ACCEPT: (1, "#54A24B", "accepted"),
    tr.RELEASE: (1, "#F58518", "released"),
    tr.REJECT: (1, "#E45756", "rejected"),
    tr.RENEW: (1, "#72B7B2", "lock renewed"),
    tr.ACK_ERROR: (1, "#222222", "acknowledgement refused"),
    tr.EXPIRE: (2, "#B279A2", "lock expired"),
    tr.CLOSE_RELEASE: (2, "#9D755D", "released by close / disconnect"),
    "archive:rejected": (3, "#E45756", "archived: rejected"),
    "archive:delivery-limit": (3, "#72171B", "archived: delivery limit"),
    "archive:other": (3, "#8C8C8C", "archived by the broker (aborted, compacted, log start)"),
}
LIFECYCLE: Final = {
    "start": "#54A24B",
    "stop": "#4C4C4C",
    "kill": "#E45756",
    "hang": "#B279A2",
    "fenced": "#B279A2",
    "rejoin": "#4C78A8",
    "disconnected": "#9D755D",
    "connect": "#72B7B2",
}
GLOBAL: Final = {
    "restart-proxy",
    "kill-instance",
    "take-over",
    "alter-config",
    "reset-offsets",
    "copy-offsets",
    "compact",
    "delete-records",
    "advance",
}


def report_data(result: RunResult) -> dict[str, object]:
    """Everything the report shows, as JSON-ready values."""
    trace = result.trace
    s = result.scenario
    totals = trace.totals()
    end = max(trace.end_ms, 1)
    lanes = _lanes(result)
    binned: dict[str, dict[str, list[list[int]]]] = {}
    width = end / BINS
    for lane in lanes:
        binned[lane] = {}
    for ev in trace.events:
        lane_id, kind = _lane_kind(ev)
        if lane_id is None or kind is None or lane_id not in binned:
            continue
        n = ev[6] - ev[5] + 1 if ev[5] >= 0 else 1
        b = min(int(ev[0] / width), BINS - 1)
        rows = binned[lane_id].setdefault(kind, [])
        if rows and rows[-1][0] == b:
            rows[-1][1] += n
            rows[-1][2] += 1
        else:
            rows.append([b, n, 1])
    return {
        "scenario": {
            "name": s.name,
            "file": s.path,
            "description": s.description,
            "tags": list(s.tags),
            "group": s.group_id,
            "topics": {k: v.partitions for k, v in s.topics.items()},
        },
        "run": {
            "target": result.target,
            "seed": result.seed,
            "status": result.status,
            "error": result.error,
            "virtual_ms": result.virtual_ms,
            "wall_s": round(result.wall_s, 3),
            "digest": trace.digest(),
        },
        "verdicts": [
            {
                "passed": v.passed,
                "expectation": v.expectation.text,
                "where": str(v.expectation.where),
                "because": v.expectation.because,
                "detail": v.detail,
            }
            for v in result.verdicts
        ],
        "totals": totals,
        "consumers": {c: asdict(stats) for c, stats in sorted(trace.consumers.items())},
        "delivery_histogram": {str(k): v for k, v in trace.delivery_histogram().items()},
        "latency_ms": {
            q: percentile(trace.latency, f)
            for q, f in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
        "samples": [list(x) for x in trace.samples],
        "partitions": {f"{t}-{p}": v for (t, p), v in sorted(trace.partition_stats.items())},
        "group": trace.group,
        "violations": [asdict(v) for v in trace.violations],
        "timeline": {"bin_ms": width, "bins": BINS, "end_ms": end, "lanes": binned},
        "lifecycle": [
            [e[0], e[1], e[2], str(e[7])]
            for e in trace.events
            if e[1] in LIFECYCLE or e[1] in GLOBAL or e[1] == "send"
        ],
        "events": [list(e) for e in trace.events[:MAX_JSON_EVENTS]],
        "events_truncated": len(trace.events) > MAX_JSON_EVENTS,
    }


def write_report(result: RunResult, directory: Path) -> Path:
    """Write ``<stem>.<target>.html`` and ``.json`` into ``directory``; returns the HTML path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = report_data(result)
    base = f"{result.scenario.stem}.{result.target}"
    (directory / f"{base}.json").write_text(
        json.dumps(data, indent=1, default=str), encoding="utf-8"
    )
    html_path = directory / f"{base}.html"
    html_path.write_text(render_html(result, data), encoding="utf-8")
    return html_path


# ---------------------------------------------------------------------------- lanes


def _lanes(result: RunResult) -> list[str]:
    seen = [c.id for c in result.scenario.consumers]
    for c in result.trace.consumers:
        if c not in seen:
            seen.append(c)
    return [*seen, "broker"]


def _lane_kind(ev: tr.Event) -> tuple[str | None, str | None]:
    kind = ev[1]
    if kind == tr.ARCHIVE:
        reason = str(ev[7])
        if reason in ("rejected", "delivery-limit"):
            return (ev[2] or "broker"), f"archive:{reason}"
        return (ev[2] or "broker"), "archive:other"
    if kind in KINDS:
        return ev[2], kind
    return None, None


def _held_series(result: RunResult, lane: str) -> list[tuple[int, int]]:
    """How many records ``lane`` held over time, as (time, count) steps."""
    held = 0
    out: list[tuple[int, int]] = [(0, 0)]
    for ev in result.trace.events:
        if ev[2] != lane:
            continue
        n = ev[6] - ev[5] + 1
        if ev[1] == tr.ACQUIRE:
            held += n
        elif ev[1] in (tr.ACCEPT, tr.RELEASE, tr.REJECT, tr.EXPIRE, tr.CLOSE_RELEASE):
            held = max(
                0, held - (int(str(ev[7])) if ev[1] in (tr.ACCEPT, tr.RELEASE, tr.REJECT) else n)
            )
        else:
            continue
        out.append((ev[0], held))
    return out


# ---------------------------------------------------------------------------- HTML


def render_html(result: RunResult, data: dict[str, object]) -> str:
    s = result.scenario
    totals = result.trace.totals()
    status = result.status
    checked = [v for v in result.verdicts if v.passed is not None]
    passed = sum(1 for v in checked if v.passed)
    cards = [
        ("produced", totals["produced"], ""),
        ("delivered", totals["delivered"], f"{totals['redelivered']:,} redeliveries"),
        ("acknowledged", totals["acknowledged"], "ACCEPT"),
        ("archived: rejected", totals["archived-rejected"], "REJECT"),
        (
            "archived: delivery limit",
            totals["archived-delivery-limit"],
            "released or expired at the limit",
        ),
        ("archived by the broker", totals["archived-other"], "aborted, compacted, log start"),
        ("lock expiries", totals["lock-expiries"], "records"),
        ("unfinished", totals["unfinished"], "not acknowledged or archived at the end"),
    ]
    card_html = "".join(
        f'<div class="card"><div class="num">{value:,}</div><div class="lbl">{escape(label)}</div>'
        f'<div class="sub">{escape(sub)}</div></div>'
        for label, value, sub in cards
    )
    rows = []
    for v in result.verdicts:
        mark, cls = {True: ("✔", "ok"), False: ("✘", "bad"), None: ("&ndash;", "na")}[v.passed]
        because = (
            f'<div class="because">{escape(v.expectation.because)}</div>'
            if v.expectation.because
            else ""
        )
        rows.append(
            f'<tr class="{cls}"><td class="mark">{mark}</td><td><code>{escape(v.expectation.text)}</code>'
            f"{because}</td><td>{escape(v.detail)}</td>"
            f'<td class="where">{escape(str(v.expectation.where))}</td></tr>'
        )
    error = f'<p class="error">Run error: {escape(result.error)}</p>' if result.error else ""
    violations = ""
    if result.trace.violations:
        items = "".join(
            f"<li>{v.time_ms:,} ms · <b>{escape(v.invariant)}</b>: {escape(v.message)}</li>"
            for v in result.trace.violations[:10]
        )
        violations = (
            '<h2>Invariant violations seen</h2><p class="hint">Recorded whether or not an '
            f'expectation checks them on this target.</p><ul class="viol">{items}</ul>'
        )
    description = "".join(
        f"<p>{escape(p.strip())}</p>" for p in s.description.split("\n\n") if p.strip()
    )
    latency = data["latency_ms"]
    assert isinstance(latency, dict)
    lat_text = " · ".join(f"{k} {v:,} ms" for k, v in latency.items() if v is not None)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(s.stem)} · {status} · sharegroup scenario</title>
<style>{_CSS}</style></head>
<body>
<header>
  <div class="badge {status.lower()}">{status}</div>
  <div>
    <h1>{escape(s.name)}</h1>
    <div class="meta">{escape(s.path)} · target <b>{result.target}</b> · seed {result.seed} ·
      group <code>{escape(s.group_id)}</code> · {result.virtual_ms / 1000:,.1f} s
      {"virtual" if result.target == "sim" else "real"} time · ran in {result.wall_s:.2f} s ·
      {passed}/{len(checked)} expectations met</div>
  </div>
</header>
{error}
<section class="desc">{description}</section>
<section class="cards">{card_html}</section>
<h2>Expectations</h2>
<table class="verdicts"><tbody>{"".join(rows)}</tbody></table>
{violations}
<h2>Timeline</h2>
<p class="hint">One lane per consumer. Within a lane, from top to bottom: acquisitions ·
acknowledgements · locks lost or released by a close · archives. The shaded band is how many
records the consumer held. Hover over a mark for its counts; darker marks stand for more records.
Vertical lines: consumer start, stop, kill, hang; dashed lines across all lanes: admin events.</p>
{_legend()}
{_timeline_svg(result, data)}
<div class="charts">
  <div><h2>Delivery count</h2><p class="hint">How many records were delivered 0, 1, 2, … times.</p>
  {_histogram_svg(result)}</div>
  <div><h2>How records ended</h2><p class="hint">Final state of every produced record.</p>
  {_endings_svg(totals)}</div>
</div>
<div class="charts">
  <div><h2>Throughput</h2><p class="hint">Records acknowledged (ACCEPT) per second.</p>
  {_series_svg(result, "throughput")}</div>
  <div><h2>In flight</h2><p class="hint">Records acquired and not yet acknowledged, released or expired.
  Latency produce → ACCEPT: {escape(lat_text or "n/a")}.</p>
  {_series_svg(result, "in-flight")}</div>
</div>
<h2>Consumers</h2>
{_consumer_table(result)}
<footer>sharegroup scenario report · the same data is in the .json file next to this one</footer>
</body></html>
"""


_CSS: Final = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;margin:24px 32px;background:#fafafa}
header{display:flex;gap:18px;align-items:center;margin-bottom:6px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:26px 0 6px}
.meta{color:#555;font-size:13px}.meta code{font-size:12px}
.badge{font-weight:700;font-size:18px;padding:10px 16px;border-radius:10px;color:#fff;letter-spacing:.05em}
.badge.pass{background:#2e9d4a}.badge.fail{background:#d63d3d}.badge.skip{background:#888}
.desc{max-width:1100px;color:#333}.desc p{margin:6px 0}
.cards{display:grid;grid-template-columns:repeat(8,minmax(110px,1fr));gap:10px;margin:14px 0;max-width:1240px}
.card{background:#fff;border:1px solid #e4e4e4;border-radius:10px;padding:10px 12px}
.card .num{font-size:22px;font-weight:650}.card .lbl{font-size:12px;color:#333}.card .sub{font-size:11px;color:#888}
table.verdicts{border-collapse:collapse;width:100%;max-width:1240px;background:#fff;border:1px solid #e4e4e4}
table.verdicts td{padding:6px 10px;border-top:1px solid #eee;vertical-align:top;font-size:13px}
table.verdicts tr.bad{background:#fdecec}table.verdicts tr.na{color:#999}
td.mark{font-size:16px;width:20px}tr.ok td.mark{color:#2e9d4a}tr.bad td.mark{color:#d63d3d}
td.where{color:#888;font-size:12px;white-space:nowrap}.because{color:#777;font-size:12px;margin-top:2px}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
.hint{color:#777;font-size:12px;margin:0 0 6px}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;font-size:12px;margin:4px 0 8px}
.legend span{display:inline-flex;align-items:center;gap:5px}.legend i{display:inline-block;width:12px;height:10px;border-radius:2px}
svg{background:#fff;border:1px solid #e4e4e4;border-radius:8px}
.charts{display:flex;gap:24px;flex-wrap:wrap}.charts>div{width:602px}
table.cons{border-collapse:collapse;background:#fff;border:1px solid #e4e4e4;font-size:12px}
table.cons th,table.cons td{padding:3px 9px;border-top:1px solid #eee;text-align:right}
table.cons th{background:#f3f3f3;font-weight:600}table.cons td:first-child,table.cons th:first-child{text-align:left}
.error{color:#b00;font-weight:600}ul.viol{color:#b00;font-size:13px}
footer{color:#aaa;font-size:11px;margin-top:30px}
"""


def _legend() -> str:
    items = [
        f'<span><i style="background:{color}"></i>{escape(label)}</span>'
        for _, (_, color, label) in KINDS.items()
    ]
    items.append('<span><i style="background:#4C78A8;opacity:.18"></i>records held</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def _x(t: float, end: float) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * (t / end if end else 0)


def _ticks(end: int) -> list[int]:
    steps = [
        1,
        2,
        5,
        10,
        20,
        50,
        100,
        200,
        500,
        1000,
        2000,
        5000,
        10_000,
        20_000,
        30_000,
        60_000,
        120_000,
        300_000,
        600_000,
        1_800_000,
        3_600_000,
    ]
    step = next((s for s in steps if end / s <= 12), steps[-1])
    return list(range(0, end + 1, step))


def _fmt_ms(ms: float) -> str:
    if ms >= 60_000 and ms % 60_000 == 0:
        return f"{ms / 60_000:g}m"
    if ms >= 1000:
        return f"{ms / 1000:g}s"
    return f"{ms:g}ms"


def _timeline_svg(result: RunResult, data: dict[str, object]) -> str:
    timeline = data["timeline"]
    assert isinstance(timeline, dict)
    end = int(timeline["end_ms"])
    lanes_data: dict[str, dict[str, list[list[int]]]] = timeline["lanes"]
    bin_ms = float(timeline["bin_ms"])
    lanes = list(lanes_data)
    if not any(lanes_data["broker"].values()):
        lanes.remove("broker")
    n = len(lanes)
    lane_h = 44 if n <= 12 else 26 if n <= 32 else 14
    top = 34
    height = top + n * lane_h + 30
    parts: list[str] = [
        f'<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" font-family="Helvetica,Arial,sans-serif">'
    ]
    plot_w = WIDTH - LEFT - RIGHT
    # grid and time axis
    for t in _ticks(end):
        x = _x(t, end)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + n * lane_h}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{top + n * lane_h + 16}" font-size="11" fill="#777" text-anchor="middle">{_fmt_ms(t)}</text>'
        )
    bin_w = max(plot_w / BINS, 5.0)
    for i, lane in enumerate(lanes):
        y0 = top + i * lane_h
        if i % 2 == 0:
            parts.append(
                f'<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{lane_h}" fill="#f7f8fa"/>'
            )
        label = lane if len(lane) <= 18 else lane[:17] + "…"
        fs = 12 if lane_h >= 26 else 9
        parts.append(
            f'<text x="{LEFT - 8}" y="{y0 + lane_h / 2 + 4:.1f}" font-size="{fs}" text-anchor="end" fill="#333">{escape(label)}</text>'
        )
        if lane != "broker":
            parts.append(_held_band(result, lane, y0, lane_h, end))
        rows = 4
        row_h = (lane_h - 4) / rows
        for kind, bins in lanes_data[lane].items():
            row, color, label_kind = KINDS[kind]
            peak = max(c for _, c, _ in bins) or 1
            for b, count, events in bins:
                x = LEFT + b * plot_w / BINS
                y = y0 + 2 + row * row_h
                opacity = 0.45 + 0.55 * min(1.0, count / peak)
                t0 = b * bin_ms
                tip = f"{lane}: {label_kind} · {count:,} record(s) in {events} event(s) · {_fmt_ms(round(t0))} to {_fmt_ms(round(t0 + bin_ms))}"
                if kind.startswith("archive"):
                    cx, cy, r = x + bin_w / 2, y + row_h / 2, max(2.5, min(row_h / 2, 5))
                    parts.append(
                        f'<path d="M{cx:.1f},{cy - r:.1f} L{cx + r:.1f},{cy:.1f} L{cx:.1f},{cy + r:.1f} L{cx - r:.1f},{cy:.1f} Z" fill="{color}" fill-opacity="{opacity:.2f}"><title>{escape(tip)}</title></path>'
                    )
                else:
                    parts.append(
                        f'<rect x="{x:.1f}" y="{y:.1f}" width="{bin_w:.1f}" height="{max(row_h - 1, 2):.1f}" fill="{color}" fill-opacity="{opacity:.2f}"><title>{escape(tip)}</title></rect>'
                    )
    # lifecycle marks on their lane, global events across all lanes
    index = {lane: i for i, lane in enumerate(lanes)}
    for e in result.trace.events:
        kind = e[1]
        if kind in LIFECYCLE and e[2] in index:
            x = _x(e[0], end)
            y0 = top + index[e[2]] * lane_h
            color = LIFECYCLE[kind]
            parts.append(
                f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + lane_h}" stroke="{color}" stroke-width="2"><title>{escape(e[2])}: {kind} at {_fmt_ms(e[0])} {escape(str(e[7]))}</title></line>'
            )
            if lane_h >= 26:
                parts.append(
                    f'<text x="{x + 3:.1f}" y="{y0 + lane_h - 3}" font-size="9" fill="{color}">{kind}</text>'
                )
        elif kind in GLOBAL:
            x = _x(e[0], end)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top - 10}" x2="{x:.1f}" y2="{top + n * lane_h}" stroke="#333" stroke-dasharray="4 3"><title>{kind} at {_fmt_ms(e[0])}: {escape(str(e[7]))}</title></line>'
            )
            parts.append(
                f'<text x="{x + 4:.1f}" y="{top - 12}" font-size="11" fill="#333">{escape(kind)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _held_band(result: RunResult, lane: str, y0: float, lane_h: float, end: int) -> str:
    series = _held_series(result, lane)
    peak = max((c for _, c in series), default=0)
    if peak == 0:
        return ""
    points = [f"{_x(0, end):.1f},{y0 + lane_h:.1f}"]
    prev = 0
    for t, c in series:
        x = _x(t, end)
        points.append(f"{x:.1f},{y0 + lane_h - (lane_h - 2) * prev / peak:.1f}")
        points.append(f"{x:.1f},{y0 + lane_h - (lane_h - 2) * c / peak:.1f}")
        prev = c
    x_end = _x(end, end)
    points.append(f"{x_end:.1f},{y0 + lane_h - (lane_h - 2) * prev / peak:.1f}")
    points.append(f"{x_end:.1f},{y0 + lane_h:.1f}")
    # Thin the polygon for very long series: every point still bounded by the data.
    if len(points) > 4000:
        step = len(points) // 2000
        points = points[:1] + points[1:-1:step] + points[-1:]
    return f'<polygon points="{" ".join(points)}" fill="#4C78A8" fill-opacity="0.16"><title>{escape(lane)} held up to {peak:,} records at once</title></polygon>'


def _bar_chart(
    bars: list[tuple[str, int, str, str]], *, width: int = 600, height: int = 220, title_x: str = ""
) -> str:
    """Vertical bars: (label, value, colour, tooltip)."""
    top, bottom, left = 16, 34, 56
    plot_h = height - top - bottom
    plot_w = width - left - 14
    peak = max((v for _, v, _, _ in bars), default=0) or 1
    n = max(len(bars), 1)
    slot = plot_w / n
    bar_w = min(60, slot * 0.7)
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="Helvetica,Arial,sans-serif">'
    ]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 14}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" fill="#777" text-anchor="end">{round(peak * frac):,}</text>'
        )
    for i, (label, value, color, tip) in enumerate(bars):
        h = plot_h * value / peak
        x = left + i * slot + (slot - bar_w) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}" rx="2"><title>{escape(tip)}</title></rect>'
        )
        if value:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 3:.1f}" font-size="10" fill="#333" text-anchor="middle">{value:,}</text>'
            )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14}" font-size="11" fill="#333" text-anchor="middle">{escape(label)}</text>'
        )
    if title_x:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-size="11" fill="#777" text-anchor="middle">{escape(title_x)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _histogram_svg(result: RunResult) -> str:
    hist = result.trace.delivery_histogram()
    if not hist:
        return "<p>No records.</p>"
    top = max(hist)
    bars = [
        (
            str(k),
            hist.get(k, 0),
            "#bbbbbb" if k == 0 else "#4C78A8" if k == 1 else "#F58518",
            f"{hist.get(k, 0):,} record(s) delivered {k} time(s)",
        )
        for k in range(top + 1)
    ]
    return _bar_chart(bars, title_x="times delivered")


def _endings_svg(totals: dict[str, int]) -> str:
    bars = [
        ("acknowledged", totals["acknowledged"], "#54A24B", "ACCEPTed"),
        (
            "rejected",
            totals["archived-rejected"],
            "#E45756",
            "archived because a consumer rejected them",
        ),
        (
            "at limit",
            totals["archived-delivery-limit"],
            "#72171B",
            "archived at share.delivery.count.limit",
        ),
        ("aborted", totals["archived-aborted"], "#8C8C8C", "aborted transactions (read_committed)"),
        ("compacted", totals["archived-compacted"], "#8C8C8C", "removed by compaction"),
        ("log start", totals["archived-log-start"], "#8C8C8C", "below a new log start offset"),
        ("skipped", totals["skipped"], "#BAB0AC", "below a share-group offsets reset"),
        (
            "unfinished",
            totals["unfinished"],
            "#4C78A8",
            "available, acquired or never delivered at the end",
        ),
    ]
    return _bar_chart(bars, title_x="final state")


def _series_svg(result: RunResult, which: str) -> str:
    samples = result.trace.samples
    width, height = 600, 220
    top, bottom, left = 16, 30, 64
    plot_h = height - top - bottom
    plot_w = width - left - 14
    if len(samples) < 2:
        return "<p>No samples.</p>"
    end = max(samples[-1][0], 1)
    points: list[tuple[float, float]] = []
    if which == "throughput":
        window = max(1, len(samples) // 100)
        for i in range(window, len(samples), window):
            t0, t1 = samples[i - window][0], samples[i][0]
            rate = (samples[i][2] - samples[i - window][2]) * 1000 / max(t1 - t0, 1)
            points.append(((t0 + t1) / 2, rate))
        color, unit = "#54A24B", "records/s"
    else:
        points = [(t, float(inflight)) for t, inflight, _, _ in samples]
        color, unit = "#4C78A8", "records"
    peak = max((v for _, v in points), default=0) or 1
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="Helvetica,Arial,sans-serif">'
    ]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 14}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" fill="#777" text-anchor="end">{peak * frac:,.0f}</text>'
        )
    for t in _ticks(end)[:: max(1, len(_ticks(end)) // 6)]:
        x = left + plot_w * t / end
        parts.append(
            f'<text x="{x:.1f}" y="{height - 10}" font-size="10" fill="#777" text-anchor="middle">{_fmt_ms(t)}</text>'
        )
    coords = " ".join(
        f"{left + plot_w * t / end:.1f},{top + plot_h * (1 - v / peak):.1f}" for t, v in points
    )
    area = f"{left:.1f},{top + plot_h:.1f} {coords} {left + plot_w * points[-1][0] / end:.1f},{top + plot_h:.1f}"
    parts.append(f'<polygon points="{area}" fill="{color}" fill-opacity="0.12"/>')
    parts.append(
        f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.6"><title>peak {peak:,.0f} {unit}</title></polyline>'
    )
    parts.append(f'<text x="{left + 4}" y="{top + 10}" font-size="10" fill="#777">{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _consumer_table(result: RunResult) -> str:
    cols = [
        "received",
        "accepted",
        "released",
        "rejected",
        "gaps",
        "lock_lost",
        "released_on_close",
        "ack_errors",
        "fetches",
        "max_per_fetch",
    ]
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols)
    groups: dict[str, list[str]] = defaultdict(list)
    for c in result.scenario.consumers:
        groups[c.replica_of or c.id].append(c.id)
    rows = []
    for name, ids in groups.items():
        if len(ids) > 8:
            stats = [result.trace.consumer(i) for i in ids]
            cells = "".join(
                f"<td>{min(s.get(c) for s in stats):,}&ndash;{max(s.get(c) for s in stats):,}</td>"
                for c in cols
            )
            rows.append(f"<tr><td>{escape(name)} &times;{len(ids)}</td>{cells}</tr>")
            continue
        for i in ids:
            s = result.trace.consumer(i)
            rows.append(
                f"<tr><td>{escape(i)}</td>{''.join(f'<td>{s.get(c):,}</td>' for c in cols)}</tr>"
            )
    return f'<table class="cons"><thead><tr><th>consumer</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
