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


RUN_INFO_KEYS = ("bench_id", "provider", "engine", "model", "gpu_instance_type", "launcher_instance_type")


def write_run_info(directory: Path, outputs: dict[str, Any]) -> dict[str, Any]:
    """`run.json` beside the summary: what was measured on what, and what that hardware costs."""
    from benchctl import pricing

    info: dict[str, Any] = {k: outputs.get(k) for k in RUN_INFO_KEYS}
    hourly = None
    if info["provider"] not in (None, "local") and info["gpu_instance_type"]:
        hourly = pricing.gpu_host_hourly_usd(info["provider"], info["gpu_instance_type"])
    info["gpu_hourly_usd"] = hourly
    info["price_table_date"] = pricing.PRICE_TABLE_DATE if hourly is not None else None
    (directory / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_run_info(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "run.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def usd_per_million_output_tokens(gpu_hourly_usd: float | None, output_tokens_per_s: float | None) -> float | None:
    """What one million generated tokens cost on this GPU host at this load point's throughput."""
    if not gpu_hourly_usd or not output_tokens_per_s:
        return None
    return round(gpu_hourly_usd / (output_tokens_per_s * 3600.0) * 1e6, 4)


def _stat(point: dict[str, Any], metric: str, key: str) -> float | None:
    value = (point.get(metric) or {}).get(key)
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def headline(summary: dict[str, Any], run_id: str, local_dir: Path) -> dict[str, Any]:
    """The numbers a reader wants first, per load point, small enough for a stack output."""
    hourly = load_run_info(local_dir).get("gpu_hourly_usd")
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
            "usd_per_million_output_tokens": usd_per_million_output_tokens(hourly, p.get("output_tokens_per_s")),
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
