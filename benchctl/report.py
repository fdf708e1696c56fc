"""Human views of a benchmark summary (summary.json, schema benchctl.summary/v1). Standard library only."""

from __future__ import annotations

from typing import Any


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _pair(stats: dict[str, Any] | None, a: str, b: str) -> str:
    stats = stats or {}
    return f"{_num(stats.get(a))} / {_num(stats.get(b))}"


def _load(point: dict[str, Any]) -> str:
    if point.get("rate") is None:
        return f"c={point.get('concurrency')}"
    return f"{point.get('arrival') or ''} {point['rate']:g}/s".strip()


def format_summary_table(summary: dict[str, Any]) -> str:
    """A fixed-width table, one row per load point, then warnings and failures.

    Columns: load (c=concurrency or arrival rate), completed/failed, request and output-token
    throughput, TTFT / ITL p50 and p99, TPOT mean, E2E p50, goodput (when SLOs were given), and
    whether the client was the bottleneck.
    """
    points = summary.get("points") or []
    has_slo = any("goodput_requests_per_s" in p for p in points)
    header = ["load", "ok/failed", "req/s", "out tok/s", "TTFT p50/p99 ms", "ITL p50/p99 ms",
              "TPOT mean ms", "E2E p50 ms"]
    if has_slo:
        header.append("goodput req/s")
    header.append("client")
    rows = [header]
    for p in points:
        req = p.get("requests", {})
        row = [
            _load(p),
            f"{req.get('completed', 0)}/{req.get('failed', 0)}",
            _num(p.get("requests_per_s"), 2),
            _num(p.get("output_tokens_per_s")),
            _pair(p.get("ttft_ms"), "p50", "p99"),
            _pair(p.get("itl_ms"), "p50", "p99"),
            _num((p.get("tpot_ms") or {}).get("mean"), 2),
            _num((p.get("e2e_ms") or {}).get("p50")),
        ]
        if has_slo:
            row.append(_num(p.get("goodput_requests_per_s"), 2))
        row.append("BOUND" if (p.get("client") or {}).get("bound") else "ok")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"{summary.get('target', '?')}  model {summary.get('model') or '?'}  api {summary.get('api', '?')}  "
        f"status {summary.get('status', '?')}"
    ]
    for i, r in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for p in points:
        errors = p.get("errors_by_reason") or {}
        if errors:
            lines.append(f"point {p.get('index')}: errors " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
        short = (p.get("requests") or {}).get("short_outputs")
        if short:
            lines.append(f"point {p.get('index')}: {short} output(s) shorter than asked")
    if points:
        src = sorted({p.get("token_count_source", "?") for p in points})
        lines.append(f"token counts: {', '.join(src)}")
    for w in summary.get("warnings") or []:
        lines.append(f"warning: {w}")
    for f in summary.get("failures") or []:
        lines.append(f"FAILED: {f}")
    return "\n".join(lines)
