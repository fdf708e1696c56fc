"""Run a LoadSpec: probe the server, calibrate prompts, then each load point with warm-up, a measured
window and the client self-check. Writes summary.json, requests.jsonl and progress.jsonl.

    python -m benchctl.load.runner --spec spec.json --out DIR [--json] [--quiet]

Exit codes: 0 done; 1 the benchmark failed (server unreachable, error threshold passed, client-bound
with `strict`); 2 bad spec. `run()` is the same thing as a library call; it returns the summary and
only raises SpecError (a failed benchmark is a summary with `"status": "failed"`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from time import perf_counter, process_time
from typing import IO, Any

from benchctl.load import metrics
from benchctl.load.dataset import FilePrompts, Prompt, SyntheticPrompts, calibrate, load_prompts
from benchctl.load.pattern import LoadPoint, arrival_offsets, closed_loop, open_loop, plan_points
from benchctl.load.request import Client, RequestRecord, new_event_loop
from benchctl.load.spec import LoadSpec, SpecError

SCHEMA = "benchctl.summary/v1"
PROGRESS_INTERVAL_S = 0.5
LOOP_TICK_S = 0.005
MIN_ERROR_SAMPLE = 20  # ended requests before the error threshold may stop a point
PROBE_ATTEMPTS = 5
ENGINES_WITHOUT_EXTRAS = {"openai"}  # hint: do not even try ignore_eos/min_tokens/continuous usage

Progress = Callable[[dict[str, Any]], None]


class RunError(Exception):
    """The benchmark cannot go on (server unreachable, probe rejected). Ends up in summary.failures."""


def run(spec: LoadSpec, out_dir: Path | None, progress: Progress | None = None) -> dict[str, Any]:
    """Run every load point of `spec`; write the result files into `out_dir` (when given) and return
    the summary dict. A KeyboardInterrupt still writes what was measured, then propagates."""
    spec.validate()
    if spec.dataset is not None:
        load_prompts(spec.dataset, spec.output_tokens)  # a bad file is a bad spec (exit 2), found early
    _raise_fd_limit()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "requests.jsonl").write_text("")
    runner = _Run(spec, out_dir, progress)
    loop, loop_name = _new_loop()
    task = loop.create_task(runner.main())
    interrupted = False
    try:
        try:
            loop.run_until_complete(task)
        except KeyboardInterrupt:
            interrupted = True
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        for t in asyncio.all_tasks(loop):
            t.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        runner.client.close()
        loop.close()
    summary = runner.summary
    summary["client_host"]["event_loop"] = loop_name
    if out_dir is not None:
        tmp = out_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(out_dir / "summary.json")
    runner.emit_done()
    runner.close_files()
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """The stamping asyncio loop (exact arrival stamps); uvloop only when BENCHCTL_UVLOOP=1 asks for it:
    it is faster but cannot stamp at poll time."""
    if os.environ.get("BENCHCTL_UVLOOP") == "1":
        try:
            import uvloop  # optional, not a dependency

            return uvloop.new_event_loop(), "uvloop"
        except ImportError:
            pass
    return new_event_loop(), "asyncio"


def _raise_fd_limit() -> None:
    """Many streams need many sockets; the default soft limit (often 1024) is lifted to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Run:
    """State of one run. Methods are the run's phases; `summary` is always a valid (partial) summary."""

    def __init__(self, spec: LoadSpec, out_dir: Path | None, progress: Progress | None) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.progress = progress
        self.client = Client(spec.target, spec.resolved_api_key())
        self.chat = spec.api == "chat"
        self.path = "/chat/completions" if self.chat else "/completions"
        self.model = spec.model or ""
        self.extras: dict[str, Any] = {}
        self.run_id = os.urandom(4).hex()
        self.seq = 0
        self.points = plan_points(spec)
        self.prompts: SyntheticPrompts | FilePrompts | None = None
        self._progress_file: IO[str] | None = None
        if out_dir is not None:
            self._progress_file = open(out_dir / "progress.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.summary: dict[str, Any] = {
            "schema": SCHEMA,
            "status": "running",
            "failures": [],
            "warnings": [],
            "target": spec.target,
            "model": spec.model,
            "api": spec.api,
            "engine": spec.engine,
            "started_at": _now_iso(),
            "finished_at": None,
            "server_options": {},
            "calibration": None,
            "client_host": {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "event_loop": "asyncio"},
            "spec": spec.to_dict(),
            "points": [],
        }
        self._last_progress: dict[str, Any] = {}

    # -------------------------------------------------------------------------------- top level

    async def main(self) -> None:
        s = self.summary
        try:
            self.emit({"phase": "warmup", "point": 0, "done": 0, "total": self.spec.warmup, "rps": 0.0,
                       "errors": 0})
            await self._discover_model()
            await self._probe_options()
            await self._prepare_prompts()
            for point in self.points:
                result, stop = await self._run_point(point)
                s["points"].append(result)
                if stop:
                    break
        except RunError as exc:
            s["failures"].append(str(exc))
        except asyncio.CancelledError:
            s["failures"].append("interrupted before the end; the points measured so far are kept")
        except Exception as exc:  # a bug must not lose the points already measured
            traceback.print_exc(file=sys.stderr)
            s["failures"].append(f"internal error: {type(exc).__name__}: {exc} (traceback on stderr)")
        finally:
            s["status"] = "failed" if s["failures"] else "ok"
            s["finished_at"] = _now_iso()

    def emit(self, fields: dict[str, Any]) -> None:
        """One progress line: appended to progress.jsonl (flushed) and handed to the callback."""
        line = {"t": round(time.time(), 3), "phase": fields["phase"], "point": fields["point"],
                "points": len(self.points), "done": fields["done"], "total": fields["total"],
                "rps": fields["rps"], "errors": fields["errors"]}
        line.update((k, v) for k, v in fields.items() if k not in line)
        self._last_progress = line
        if self._progress_file is not None:
            self._progress_file.write(json.dumps(line) + "\n")
            self._progress_file.flush()
        if self.progress is not None:
            self.progress(line)

    def emit_done(self) -> None:
        last = self._last_progress
        self.emit({"phase": "done", "point": last.get("point", 0), "done": last.get("done", 0),
                   "total": last.get("total"), "rps": last.get("rps", 0.0), "errors": last.get("errors", 0),
                   "status": self.summary["status"]})

    def close_files(self) -> None:
        if self._progress_file is not None:
            self._progress_file.close()
            self._progress_file = None

    # -------------------------------------------------------------------------------- preparation

    def _new_record(self, max_tokens: int = 0, warmup: bool = False) -> RequestRecord:
        self.seq += 1
        return RequestRecord(id=f"benchctl-{self.run_id}-{self.seq}", warmup=warmup, max_tokens=max_tokens)

    def _body(self, text: str, max_tokens: int, extras: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {"model": self.model}
        if self.chat:
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        body["max_tokens"] = max_tokens
        body["stream"] = True
        body.update(self.extras if extras is None else extras)
        if "min_tokens" in body:
            body["min_tokens"] = max_tokens
        return json.dumps(body).encode()

    async def _discover_model(self) -> None:
        if self.spec.model:
            self.model = self.spec.model
            return
        status, doc, err = await self.client.get_json("/models", timeout_s=min(self.spec.timeout_s, 30.0))
        if err is not None or status != 200:
            raise RunError(f"cannot list models at {self.spec.target} (GET /v1/models: {err or status}); "
                           "is the server up? pass --model to skip this step")
        try:
            self.model = str(doc["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise RunError("GET /v1/models returned no model; pass --model") from None
        self.summary["model"] = self.model

    async def _probe(self, text: str, max_tokens: int, extras: dict[str, Any]) -> RequestRecord:
        """One request outside the measurement, retried on 5xx and connection errors."""
        rec = RequestRecord(id="")
        for attempt in range(PROBE_ATTEMPTS):
            rec = self._new_record(max_tokens)
            await self.client.request(rec, "POST", self.path, self._body(text, max_tokens, extras),
                                      timeout_s=self.spec.timeout_s, chat=self.chat)
            if rec.error is None or (rec.status is not None and rec.status < 500):
                return rec
            await asyncio.sleep(0.05 * (attempt + 1))
        return rec

    async def _probe_options(self) -> None:
        """Ask for exact output lengths and per-chunk usage; drop what the server rejects with 400/422."""
        full: dict[str, Any] = {"stream_options": {"include_usage": True, "continuous_usage_stats": True},
                                "ignore_eos": True, "min_tokens": 0}
        variants: list[tuple[str, dict[str, Any]]] = [
            ("ignore_eos+min_tokens", full),
            ("continuous_usage_stats", {"stream_options": {"include_usage": True}}),
            ("stream_options", {}),
        ]
        if (self.spec.engine or "").lower() in ENGINES_WITHOUT_EXTRAS:
            variants = variants[1:]
        rejected: list[str] = []
        rec: RequestRecord | None = None
        for dropped_if_rejected, extras in variants:
            rec = await self._probe("Say hello.", 4, extras)
            if rec.status in (400, 422):
                rejected.append(dropped_if_rejected)
                continue
            if rec.error is not None:
                raise RunError(f"the first request to {self.spec.target} failed: {rec.error}"
                               + (f" ({rec.detail})" if rec.detail else ""))
            self.extras = extras
            break
        else:
            detail = f" ({rec.detail})" if rec is not None and rec.detail else ""
            raise RunError(f"the server rejects even a plain streaming request with HTTP {rec and rec.status}{detail}")
        assert rec is not None
        self.summary["server_options"] = {
            "ignore_eos": "ignore_eos" in self.extras,
            "min_tokens": "min_tokens" in self.extras,
            "include_usage": rec.completion_tokens is not None,
            "continuous_usage": rec.continuous_usage,
            "rejected": rejected,
        }
        if rejected:
            self.summary["warnings"].append(
                f"the server rejected {', '.join(rejected)}: sent without; output lengths are checked per request")

    async def _prepare_prompts(self) -> None:
        spec = self.spec
        if spec.dataset is not None:
            self.prompts = FilePrompts(load_prompts(spec.dataset, spec.output_tokens), spec.seed)
            self.summary["calibration"] = {"method": "dataset", "file": spec.dataset,
                                           "prompts": len(self.prompts.prompts)}
            return
        synth = SyntheticPrompts(spec.input_tokens, spec.output_tokens, spec.seed)

        async def measure(words: int) -> int | None:
            rec = await self._probe(synth.make(words), 1, self.extras)
            if rec.error is not None:
                raise RunError(f"a calibration request failed: {rec.error}" + (f" ({rec.detail})" if rec.detail else ""))
            return rec.prompt_tokens

        synth.words, info = await calibrate(spec.input_tokens, measure)
        self.prompts = synth
        self.summary["calibration"] = info

    # -------------------------------------------------------------------------------- one point

    async def _run_point(self, point: LoadPoint) -> tuple[dict[str, Any], bool]:
        spec = self.spec
        assert self.prompts is not None
        prompts = self.prompts
        measured: list[RequestRecord] = []
        st = {"warm_ended": 0, "warm_failed": 0, "ended": 0, "failed": 0, "ok": 0, "all_ended": 0,
              "all_failed": 0}
        window: dict[str, float] = {}
        loop_lags: list[tuple[float, float]] = []
        stop_reason: list[str] = []
        point_task: asyncio.Task[Any] | None = None
        offsets: list[float] | None = None
        if point.rate is not None:
            assert point.arrival is not None
            rng = random.Random(f"arrivals:{spec.seed}:{point.index}")
            count = spec.warmup + spec.requests if spec.requests is not None else None
            dur = spec.warmup / point.rate + spec.duration_s if spec.duration_s is not None else None
            offsets = arrival_offsets(point.rate, point.arrival, rng, count=count, duration_s=dur)
        measured_total = (len(offsets) - min(spec.warmup, len(offsets))) if offsets is not None else spec.requests
        if spec.warmup == 0:
            window["open"] = perf_counter()
            window["cpu"] = process_time()

        async def send(scheduled: float, warm: bool) -> float:
            text = prompts.next()
            rec = self._new_record(text.output_tokens, warm)
            rec.scheduled = scheduled
            if not warm and "open" not in window:
                window["open"] = perf_counter()
                window["cpu"] = process_time()
                self._emit_point(point, st, window, measured_total, 0.0)
            try:
                await self.client.request(rec, "POST", self.path, self._body_for(text), timeout_s=spec.timeout_s,
                                          chat=self.chat)
            finally:
                if rec.error is None and rec.end is None:  # cancelled before an answer (e.g. while connecting)
                    rec.error, rec.detail, rec.end = "cancelled", "the run stopped before this request finished", perf_counter()
                account(rec)
            return rec.end if rec.end is not None else perf_counter()

        def account(rec: RequestRecord) -> None:
            failed = rec.error is not None
            if rec.warmup:
                st["warm_ended"] += 1
                st["warm_failed"] += failed
            else:
                measured.append(rec)
                st["ended"] += 1
                st["failed"] += failed
                st["ok"] += not failed
            st["all_ended"] += 1
            st["all_failed"] += failed
            n, f = st["all_ended"], st["all_failed"]
            if not stop_reason and n >= MIN_ERROR_SAMPLE and f / n > spec.max_error_rate:
                reasons = _top_reasons([rec] + measured[-50:])
                stop_reason.append(
                    f"point {point.index} ({point.label()}): stopped early, {f} of {n} requests failed "
                    f"({f / n:.0%} > max_error_rate {spec.max_error_rate:.0%}); {reasons}")
                if point_task is not None:
                    point_task.cancel()

        expected = measured_total + spec.warmup if measured_total is not None else point.concurrency
        await self.client.prewarm(min(point.concurrency, max(1, expected)), timeout_s=min(spec.timeout_s, 10.0))
        ticker = asyncio.create_task(_loop_ticker(loop_lags))
        reporter = asyncio.create_task(self._report(point, st, window, measured_total))
        if offsets is None:
            coro: Any = closed_loop(point.concurrency, send, warmup=spec.warmup, requests=spec.requests,
                                    duration_s=spec.duration_s)
        else:
            coro = open_loop(offsets, point.concurrency, send, warmup=spec.warmup)
        point_task = asyncio.create_task(coro)
        interrupted = False
        try:
            await asyncio.wait([point_task])
        except asyncio.CancelledError:
            interrupted = True  # Ctrl-C / SIGTERM: stop, but keep what this point measured
        finally:
            if not point_task.done():
                point_task.cancel()
                await asyncio.wait([point_task])
            ticker.cancel()
            reporter.cancel()
        end_wall, end_cpu = perf_counter(), process_time()
        capped = None
        if not point_task.cancelled():
            exc = point_task.exception()
            if exc is not None:
                raise exc
            capped = point_task.result()
        # Client self-check over the measured window.
        open_t = window.get("open", end_wall)
        wall = max(end_wall - open_t, 1e-9)
        self._emit_point(point, st, window, measured_total, st["ok"] / wall if "open" in window else 0.0)
        cpu = (end_cpu - window.get("cpu", end_cpu)) / wall * 100.0
        send_lags = [(r.sent - r.scheduled) * 1000.0 for r in measured if r.sent and r.error != "connect_error"]
        lags = [lag for t, lag in loop_lags if t >= open_t]
        client = metrics.client_check(send_lags, lags, cpu)
        result = metrics.summarize_point(measured, index=point.index, concurrency=point.concurrency,
                                         rate=point.rate, arrival=point.arrival, slo=spec.slo, client=client)
        result["warmup_requests"] = {"completed": st["warm_ended"] - st["warm_failed"], "failed": st["warm_failed"]}
        if capped is not None:
            result["capped"] = capped
        result["stopped_early"] = bool(stop_reason)
        self._write_requests(point, measured)

        stop = False
        if interrupted:
            result["stopped_early"] = True
            self.summary["failures"].append(
                f"interrupted during point {point.index} ({point.label()}); the requests measured so far are kept")
            stop = True
        elif stop_reason:
            self.summary["failures"].append(stop_reason[0])
            stop = True
        elif st["all_ended"] and st["all_failed"] / st["all_ended"] > spec.max_error_rate:
            self.summary["failures"].append(
                f"point {point.index} ({point.label()}): {st['all_failed']} of {st['all_ended']} requests failed "
                f"(> max_error_rate {spec.max_error_rate:.0%}); {_top_reasons(measured)}")
            stop = True
        if client["bound"]:
            msg = (f"point {point.index} ({point.label()}): the client was the bottleneck "
                   f"({'; '.join(client['reasons'])}); its latency numbers are not trustworthy")
            if spec.strict:
                self.summary["failures"].append(msg + " (strict)")
                stop = True
            else:
                self.summary["warnings"].append(msg)
        short = result["requests"]["short_outputs"]
        if short:
            self.summary["warnings"].append(
                f"point {point.index}: {short} request(s) returned fewer output tokens than asked")
        return result, stop

    def _body_for(self, prompt: Prompt) -> bytes:
        return self._body(prompt.text, prompt.output_tokens)

    def _emit_point(self, point: LoadPoint, st: dict[str, int], window: dict[str, float],
                    total: int | None, rps: float) -> None:
        if "open" in window:
            self.emit({"phase": "measure", "point": point.index, "done": st["ended"], "total": total,
                       "rps": round(rps, 2), "errors": st["failed"]})
        else:
            self.emit({"phase": "warmup", "point": point.index, "done": st["warm_ended"], "total": self.spec.warmup,
                       "rps": round(rps, 2), "errors": st["warm_failed"]})

    async def _report(self, point: LoadPoint, st: dict[str, int], window: dict[str, float],
                      total: int | None) -> None:
        last_t, last_n = perf_counter(), 0
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            now = perf_counter()
            n = st["all_ended"] - st["all_failed"]
            self._emit_point(point, st, window, total, (n - last_n) / (now - last_t))
            last_t, last_n = now, n

    def _write_requests(self, point: LoadPoint, records: list[RequestRecord]) -> None:
        if self.out_dir is None or not records:
            return
        start = min(r.sent for r in records if r.sent) if any(r.sent for r in records) else 0.0
        with open(self.out_dir / "requests.jsonl", "a", encoding="utf-8") as f:
            for r in sorted(records, key=lambda r: r.sent):
                f.write(json.dumps(metrics.request_line(r, point.index, start)) + "\n")


def _top_reasons(records: list[RequestRecord]) -> str:
    counts: dict[str, int] = {}
    detail: dict[str, str] = {}
    for r in records:
        if r.error:
            counts[r.error] = counts.get(r.error, 0) + 1
            if r.detail and r.error not in detail:
                detail[r.error] = r.detail
    if not counts:
        return "no reason recorded"
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return "most common: " + ", ".join(
        f"{k} x{v}" + (f" ({detail[k][:120]})" if k in detail else "") for k, v in top)


async def _loop_ticker(out: list[tuple[float, float]]) -> None:
    """Event-loop lag: how late a timer on absolute 5 ms deadlines fires. The floor is about 1 ms
    (the selector waits in whole milliseconds); more means callbacks are queueing behind work."""
    nxt = perf_counter() + LOOP_TICK_S
    while True:
        await asyncio.sleep(max(0.0, nxt - perf_counter()))
        now = perf_counter()
        out.append((now, (now - nxt) * 1000.0))
        nxt += LOOP_TICK_S
        if nxt < now:
            nxt = now + LOOP_TICK_S


# -------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchctl.load.runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", required=True, help="the LoadSpec as JSON (LoadSpec.to_dict())")
    p.add_argument("--out", required=True, help="directory for summary.json, requests.jsonl, progress.jsonl")
    p.add_argument("--json", action="store_true", help="print summary.json on stdout at the end")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = p.parse_args(argv)
    try:
        data = json.loads(Path(a.spec).read_text(encoding="utf-8"))
        spec = LoadSpec.from_dict(data)
    except (OSError, ValueError) as exc:  # SpecError is a ValueError, as is bad JSON
        print(f"error: bad spec {a.spec}: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    last = [0.0]

    def show(line: dict[str, Any]) -> None:
        now = time.monotonic()
        if line["phase"] != "done" and now - last[0] < 5.0:
            return
        last[0] = now
        total = line.get("total")
        print(f"[{line['phase']}] point {line['point'] + 1}/{line['points']}: {line['done']}"
              f"{'/' + str(total) if total else ''} requests, {line['rps']:.1f} req/s, {line['errors']} errors",
              file=sys.stderr, flush=True)

    try:
        summary = run(spec, Path(a.out), None if (a.quiet or a.json) else show)
    except SpecError as exc:
        print(f"error: bad spec: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; partial results written", file=sys.stderr)
        return 130
    for w in summary["warnings"]:
        print(f"WARNING: {w}", file=sys.stderr)
    for f in summary["failures"]:
        print(f"FAILED: {f}", file=sys.stderr)
    if a.json:
        print(json.dumps(summary, indent=2))
    elif not a.quiet:
        for pt in summary["points"]:
            print(f"point {pt['index']}: {pt['requests']['completed']} ok, {pt['requests']['failed']} failed, "
                  f"{pt['requests_per_s']:.2f} req/s, {pt['output_tokens_per_s']:.1f} out tok/s, "
                  f"TTFT p50 {_fmt(pt['ttft_ms']['p50'])} ms, ITL p50 {_fmt(pt['itl_ms']['p50'])} ms",
                  file=sys.stderr)
    return 0 if summary["status"] == "ok" else 1


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
