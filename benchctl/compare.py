"""`benchctl compare`: several runs side by side, to choose a GPU, a cloud and an engine.

Each argument is a results directory (holding `summary.json`, and `run.json` when benchctl
provisioned it) or a bench.toml (its latest local results). One row per run and load point, with
the cost of a million output tokens on that GPU host at that throughput, from the dated price table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchctl.errors import UsageError
from benchctl.results import latest_local, load_run_info, load_summary, usd_per_million_output_tokens


def resolve(arg: str) -> Path:
    """A results directory from a directory, a summary.json path, or a bench.toml."""
    path = Path(arg)
    if path.is_file() and path.suffix == ".toml":
        from benchctl.config import load_config

        cfg = load_config(path)
        found = latest_local(cfg.project_dir, cfg.bench_id)
        if found is None:
            raise UsageError(f"{path}: no results for bench_id {cfg.bench_id!r} yet (run `benchctl run -c {path}`)")
        return found
    if path.name == "summary.json":
        path = path.parent
    if not (path / "summary.json").is_file():
        raise UsageError(f"{arg}: expected a results directory with a summary.json, or a bench.toml")
    return path


def rows(directories: list[Path]) -> list[dict[str, Any]]:
    out = []
    for directory in directories:
        summary = load_summary(directory) or {}
        info = load_run_info(directory)
        label = info.get("bench_id") or directory.parent.name
        for p in summary.get("points", []):
            tok_s = p.get("output_tokens_per_s")
            out.append({
                "run": f"{label}/{directory.name}",
                "provider": info.get("provider"),
                "gpu": info.get("gpu_instance_type"),
                "engine": info.get("engine") or summary.get("engine"),
                "model": info.get("model") or summary.get("model"),
                "load": f"c={p['concurrency']}" if p.get("rate") is None else f"{p['rate']:g}/s",
                "completed": (p.get("requests") or {}).get("completed"),
                "failed": (p.get("requests") or {}).get("failed"),
                "requests_per_s": p.get("requests_per_s"),
                "output_tokens_per_s": tok_s,
                "ttft_ms_p50": (p.get("ttft_ms") or {}).get("p50"),
                "tpot_ms_p50": (p.get("tpot_ms") or {}).get("p50"),
                "e2e_ms_p99": (p.get("e2e_ms") or {}).get("p99"),
                "gpu_hourly_usd": info.get("gpu_hourly_usd"),
                "usd_per_million_output_tokens": usd_per_million_output_tokens(info.get("gpu_hourly_usd"), tok_s),
                "client_bound": bool((p.get("client") or {}).get("bound")),
            })
    return out


COLUMNS = (("run", "run"), ("gpu", "gpu"), ("engine", "engine"), ("load", "load"), ("req/s", "requests_per_s"),
           ("out tok/s", "output_tokens_per_s"), ("TTFT p50", "ttft_ms_p50"), ("TPOT p50", "tpot_ms_p50"),
           ("E2E p99", "e2e_ms_p99"), ("$/h", "gpu_hourly_usd"), ("$/1M out tok", "usd_per_million_output_tokens"))


def render(table: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:,.2f}" if isinstance(value, float) else str(value)

    grid = [[h for h, _ in COLUMNS]] + [[cell(r[k]) for _, k in COLUMNS] for r in table]
    widths = [max(len(row[i]) for row in grid) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in grid]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r["client_bound"] for r in table):
        lines.append("warning: the client was the bottleneck on some points: their numbers understate the server")
    if any(r["usd_per_million_output_tokens"] is not None for r in table):
        lines.append("cost: on-demand list price of the GPU host (docs/providers.md, dated table) over the measured "
                     "output throughput; compute only")
    return "\n".join(lines)
