"""Saved results: where they live, their headline (what goes into the stack outputs), and lookup.

Files: `results/<bench_id>/<run_id>/{summary.json,requests.jsonl,progress.jsonl,runner.log}` beside the
bench.toml. The stack output `results` holds the headline numbers per load point and where the files
are, so `pulumi stack output results` (or a teammate's `benchctl results`) shows them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def results_root(project_dir: Path, bench_id: str) -> Path:
    return project_dir / "results" / bench_id


def latest_local(project_dir: Path, bench_id: str) -> Path | None:
    root = results_root(project_dir, bench_id)
    runs = sorted(p for p in root.glob("*") if (p / "summary.json").exists()) if root.is_dir() else []
    return runs[-1] if runs else None


def _stat(point: dict[str, Any], metric: str, key: str) -> float | None:
    value = (point.get(metric) or {}).get(key)
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def headline(summary: dict[str, Any], run_id: str, local_dir: Path) -> dict[str, Any]:
    """The numbers a reader wants first, per load point, small enough for a stack output."""
    points = []
    for p in summary.get("points", []):
        req = p.get("requests", {})
        points.append({
            "concurrency": p.get("concurrency"),
            "rate": p.get("rate"),
            "completed": req.get("completed"),
            "failed": req.get("failed"),
            "timeouts": req.get("timeouts"),
            "requests_per_s": _round(p.get("requests_per_s")),
            "output_tokens_per_s": _round(p.get("output_tokens_per_s")),
            "ttft_ms_p50": _stat(p, "ttft_ms", "p50"),
            "ttft_ms_p99": _stat(p, "ttft_ms", "p99"),
            "tpot_ms_p50": _stat(p, "tpot_ms", "p50"),
            "itl_ms_p50": _stat(p, "itl_ms", "p50"),
            "e2e_ms_p50": _stat(p, "e2e_ms", "p50"),
            "goodput_requests_per_s": _round(p.get("goodput_requests_per_s")),
            "client_bound": bool((p.get("client") or {}).get("bound")),
        })
    return {
        "run_id": run_id,
        "schema": summary.get("schema"),
        "model": summary.get("model"),
        "api": summary.get("api"),
        "local_dir": str(local_dir),
        "files": ["summary.json", "requests.jsonl"],
        "points": points,
    }


def _round(value: Any) -> float | None:
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def load_summary(directory: Path) -> dict[str, Any] | None:
    path = directory / "summary.json"
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def headline_table(head: dict[str, Any]) -> str:
    """A plain table of a headline (used when the full summary file is not on this machine)."""
    cols = [("conc", "concurrency"), ("rate", "rate"), ("ok", "completed"), ("fail", "failed"),
            ("req/s", "requests_per_s"), ("out tok/s", "output_tokens_per_s"), ("TTFT p50", "ttft_ms_p50"),
            ("TTFT p99", "ttft_ms_p99"), ("TPOT p50", "tpot_ms_p50"), ("ITL p50", "itl_ms_p50"),
            ("E2E p50", "e2e_ms_p50")]
    rows = [[h for h, _ in cols]]
    for p in head.get("points", []):
        rows.append(["-" if p.get(k) is None else (f"{p[k]:.1f}" if isinstance(p[k], float) else str(p[k]))
                     for _, k in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(p.get("client_bound") for p in head.get("points", [])):
        lines.append("warning: the client was the bottleneck on at least one point (see summary.json client)")
    return "\n".join(lines)
