"""The simulated engine: an OpenAI-compatible streaming server with a timing model and a truth log.

Standard library only, on asyncio.Protocol (streams cost too much per chunk), so it runs anywhere as
`python -m benchctl.simulator` and serves well over 1,500 requests/s on one core at zero latency.

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (streaming and not), `GET /v1/models`,
`GET /health`. Streams carry a final usage chunk when `stream_options.include_usage` is set, and usage
on every chunk when `stream_options.continuous_usage_stats` is also set (vLLM's extension).

Token counts: the prompt's token count is its number of whitespace-separated words; chat adds
4 tokens per message and 3 for the assistant prefix (a stand-in for a chat template, so a client must
calibrate rather than assume words = tokens). Output: exactly `max_tokens` (default 16) with
`ignore_eos`, or when `min_tokens` equals it; otherwise, like a model meeting its end-of-sequence
token, half the requests stop early at 25-100% of `max_tokens` (never below `min_tokens`).

Timing model (all times are absolute deadlines on the loop clock, so the server's truth is exact):
  * a request is admitted when fewer than `max_running` are running, otherwise it waits in a FIFO queue;
    the response headers (and, for chat, the role-only chunk) are sent as soon as it arrives;
  * first token at admission + ttft_base_ms + prefill_ms_per_1k * prompt_tokens / 1000;
  * each following token (itl_ms + itl_ms_per_running_seq * running) after the one before;
  * the first token goes out alone; later chunks carry `tokens_per_chunk` tokens (the last may carry
    fewer) and are sent when their last token is due, as with speculative decoding or stream intervals.
Failures: a `fail_rate` share of requests gets HTTP 500 and a `hang_rate` share never gets an answer.
The shares are exact over any run (error diffusion from a seeded start), so tests can count them.

`--truth-log FILE` writes one JSON line per request: id (the X-Request-Id header), status, arrival,
admitted, first_token, chunks ([send time, tokens] pairs), prompt_tokens, completion_tokens; times are
`time.perf_counter()` seconds, the same clock the benchctl client uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import selectors
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import IO, Any

CHAT_TOKENS_PER_MESSAGE = 4
CHAT_TOKENS_REPLY_PREFIX = 3
_WORDS = [" the", " model", " says", " hello", " to", " a", " simulated", " user", " and", " then",
          " keeps", " going", " with", " more", " tokens", " now"]
_SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n")
_EPS = 1e-6
# One shared receive buffer (see benchctl/load/request.py: asyncio's default recv of 256 KiB costs
# an mmap per read; recv_into a reused buffer does not).
_RECV_BUF = memoryview(bytearray(256 * 1024))


@dataclass
class SimConfig:
    """The timing and failure model. Defaults match `[simulator]` in bench.toml."""

    ttft_base_ms: float = 10.0
    prefill_ms_per_1k_tokens: float = 20.0
    itl_ms: float = 5.0
    itl_ms_per_running_seq: float = 0.05
    max_running: int = 256
    tokens_per_chunk: int = 1
    fail_rate: float = 0.0
    hang_rate: float = 0.0
    model: str = "benchctl-sim"
    seed: int = 0
    strict_openai: bool = False  # reject ignore_eos/min_tokens/continuous_usage_stats with 400, like OpenAI

    def validate(self) -> None:
        """Raise ValueError naming the first impossible setting."""
        for name in ("ttft_base_ms", "prefill_ms_per_1k_tokens", "itl_ms", "itl_ms_per_running_seq"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_running < 1 or self.tokens_per_chunk < 1:
            raise ValueError("max_running and tokens_per_chunk must be >= 1")
        if not (0 <= self.fail_rate <= 1 and 0 <= self.hang_rate <= 1):
            raise ValueError("fail_rate and hang_rate must be in [0, 1]")
        if self.fail_rate + self.hang_rate > 1:
            raise ValueError("fail_rate + hang_rate must be <= 1")


class _Gen:
    """One generation in flight."""

    __slots__ = ("conn", "rid", "chat", "stream", "usage", "continuous", "target", "prompt", "arrival",
                 "admitted", "first", "deadline", "produced", "chunks", "handle", "prefix", "suffix",
                 "finish", "done", "queued")

    def __init__(self, conn: _ServerConn, rid: str, chat: bool) -> None:
        self.conn = conn
        self.rid = rid
        self.chat = chat
        self.stream = True
        self.usage = False
        self.continuous = False
        self.target = 0
        self.prompt = 0
        self.arrival = 0.0
        self.admitted = 0.0
        self.first: float | None = None
        self.deadline = 0.0
        self.produced = 0
        self.chunks: list[list[float]] = []
        self.handle: asyncio.TimerHandle | None = None
        self.prefix = ""
        self.suffix = ""
        self.finish = "length"
        self.done = False
        self.queued = False


class _StampingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Records when each poll returned: a request's arrival is when the selector saw it, not when the
    loop got round to reading it behind the other sockets of the same poll."""

    t = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(timeout)
        _StampingSelector.t = perf_counter()
        return events  # type: ignore[no-any-return]


class Simulator:
    """The engine: admission, queue, token clock, failures and the truth log."""

    def __init__(self, config: SimConfig, truth_log: IO[str] | None = None) -> None:
        self.cfg = config
        self.loop = asyncio.get_running_loop()
        self.running = 0
        self.queue: deque[_Gen] = deque()
        self.rng = random.Random(config.seed)
        self._fail_acc = self.rng.random()
        self._hang_acc = self.rng.random()
        self.count = 0
        self.truth = truth_log
        self._truth_buf: list[str] = []
        self.model_json = json.dumps(config.model)
        self.created = int(time.time())
        if truth_log is not None:
            self.loop.call_later(0.1, self._flush_tick)

    # ---------------------------------------------------------------------------- truth log

    def log(self, entry: dict[str, Any]) -> None:
        if self.truth is not None:
            self._truth_buf.append(json.dumps(entry, separators=(",", ":")))

    def flush(self) -> None:
        if self.truth is not None and self._truth_buf:
            self.truth.write("\n".join(self._truth_buf) + "\n")
            self.truth.flush()
            self._truth_buf.clear()

    def _flush_tick(self) -> None:
        self.flush()
        self.loop.call_later(0.1, self._flush_tick)

    # ---------------------------------------------------------------------------- requests

    def _share(self, acc_name: str, rate: float) -> bool:
        """Error diffusion: over any n requests, exactly floor/ceil(n * rate) are picked."""
        acc: float = getattr(self, acc_name) + rate
        hit = acc >= 1.0
        setattr(self, acc_name, acc - 1.0 if hit else acc)
        return hit

    def completion(self, conn: _ServerConn, rid: str, chat: bool, body: dict[str, Any], arrival: float) -> None:
        cfg = self.cfg
        self.count += 1
        model = body.get("model")
        if model is not None and model != cfg.model:
            conn.send_json(404, _error(f"The model `{model}` does not exist.", "NotFoundError"))
            return
        opts = body.get("stream_options") or {}
        if cfg.strict_openai:
            bad: list[str] = [k for k in ("ignore_eos", "min_tokens") if k in body]
            bad += ["stream_options.continuous_usage_stats"] if "continuous_usage_stats" in opts else []
            if bad:
                conn.send_json(400, _error(f"Unrecognized request argument supplied: {', '.join(bad)}"))
                return
        try:
            prompt = _prompt_tokens(body, chat)
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
            min_tokens = int(body.get("min_tokens") or 0)
        except (TypeError, ValueError, AttributeError) as exc:
            conn.send_json(400, _error(f"bad request: {exc}"))
            return
        if max_tokens < 1:
            conn.send_json(400, _error("max_tokens must be at least 1"))
            return
        if self._share("_fail_acc", cfg.fail_rate):
            self.log({"id": rid, "status": 500, "arrival": arrival})
            conn.send_json(500, _error("simulated failure", "InternalServerError"))
            return
        if self._share("_hang_acc", cfg.hang_rate):
            self.log({"id": rid, "status": "hang", "arrival": arrival})
            conn.hanging = True
            return
        g = _Gen(conn, rid, chat)
        g.arrival = arrival
        g.prompt = prompt
        g.stream = bool(body.get("stream"))
        g.usage = bool(opts.get("include_usage")) and g.stream
        g.continuous = g.usage and bool(opts.get("continuous_usage_stats"))
        if body.get("ignore_eos") or min_tokens >= max_tokens or self.rng.random() < 0.5:
            g.target = max_tokens
        else:
            g.target = max(min_tokens, 1, int(max_tokens * (0.25 + 0.75 * self.rng.random())))
            g.finish = "stop"
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = f'data: {{"id":"{"chatcmpl" if chat else "cmpl"}-{self.count}","object":"{obj}","created":{self.created},"model":{self.model_json},'
        g.prefix = head + ('"choices":[{"index":0,"delta":{"content":"' if chat else '"choices":[{"index":0,"text":"')
        g.suffix = '"}' if chat else '"'
        conn.gen = g
        if g.stream:
            first = ""
            if chat:
                role = head + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]'
                first = _frame(role + (_usage(prompt, 0) if g.continuous else "") + "}\n\n")
            conn.pending = _SSE_HEAD + first.encode()
        if self.running < cfg.max_running:
            self._admit(g, self.loop.time())
        else:
            g.queued = True
            self.queue.append(g)
            conn.flush_pending()

    def _admit(self, g: _Gen, now: float) -> None:
        cfg = self.cfg
        self.running += 1
        g.queued = False
        g.admitted = perf_counter()
        g.deadline = now + (cfg.ttft_base_ms + cfg.prefill_ms_per_1k_tokens * g.prompt / 1000.0) / 1000.0
        if g.deadline <= self.loop.time() + _EPS:
            self._pump(g)
        else:
            g.conn.flush_pending()
            g.handle = self.loop.call_at(g.deadline, self._pump, g)

    def _pump(self, g: _Gen) -> None:
        """Emit every chunk that is due, in one write, and schedule the next one."""
        g.handle = None
        if g.done:
            return
        cfg = self.cfg
        now = self.loop.time() + _EPS
        parts: list[str] = []
        emitted: list[list[float]] = []
        tpc = cfg.tokens_per_chunk
        while g.produced < g.target and g.deadline <= now:
            k = 1 if g.produced == 0 else min(tpc, g.target - g.produced)
            start = g.produced
            g.produced += k
            text = _WORDS[start & 15] if k == 1 else "".join(_WORDS[(start + j) & 15] for j in range(k))
            if g.stream:
                fin = f'"{g.finish}"' if g.produced >= g.target else "null"
                ev = f'{g.prefix}{text}{g.suffix},"logprobs":null,"finish_reason":{fin}}}]'
                if g.continuous:
                    ev += _usage(g.prompt, g.produced)
                parts.append(_frame(ev + "}\n\n"))
            emitted.append([0.0, k])
            if g.produced < g.target:
                nk = min(tpc, g.target - g.produced)
                g.deadline += nk * (cfg.itl_ms + cfg.itl_ms_per_running_seq * self.running) / 1000.0
        done = g.produced >= g.target
        if done and g.stream:
            if g.usage:
                tail = g.prefix.split('"choices"', 1)[0] + '"choices":[]' + _usage(g.prompt, g.produced) + "}\n\n"
                parts.append(_frame(tail))
            parts.append(_frame("data: [DONE]\n\n"))
            parts.append("0\r\n\r\n")
        t = perf_counter()
        for e in emitted:
            e[0] = t
        if emitted and g.first is None:
            g.first = t
        g.chunks.extend(emitted)
        if g.stream:
            g.conn.write(parts)
        if done:
            self._finish(g, 200)
        else:
            g.conn.flush_pending()
            g.handle = self.loop.call_at(g.deadline, self._pump, g)

    def _finish(self, g: _Gen, status: int | str) -> None:
        g.done = True
        if g.handle is not None:
            g.handle.cancel()
            g.handle = None
        if not g.queued:
            self.running -= 1
        if status == 200 and not g.stream:
            text = "".join(_WORDS[i & 15] for i in range(g.produced))
            if g.chat:
                choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
            else:
                choice = {"index": 0, "text": text}
            choice["finish_reason"] = g.finish
            g.conn.send_json(200, {
                "id": g.rid, "object": "chat.completion" if g.chat else "text_completion",
                "created": self.created, "model": self.cfg.model, "choices": [choice],
                "usage": {"prompt_tokens": g.prompt, "completion_tokens": g.produced,
                          "total_tokens": g.prompt + g.produced},
            })
        elif status == 200:
            g.conn.response_done()
        self.log({"id": g.rid, "status": status, "arrival": g.arrival, "admitted": g.admitted or None,
                  "first_token": g.first, "chunks": g.chunks, "prompt_tokens": g.prompt,
                  "completion_tokens": g.produced})
        while self.queue and self.running < self.cfg.max_running:
            nxt = self.queue.popleft()
            if not nxt.done:
                self._admit(nxt, self.loop.time())

    def abandon(self, g: _Gen) -> None:
        """The client went away mid-response."""
        if not g.done:
            self._finish(g, "disconnected")


class _ServerConn(asyncio.BufferedProtocol):
    """One client connection: HTTP/1.1 keep-alive, one request at a time (no pipelining needed)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.close_after = False
        self.gen: _Gen | None = None
        self.pending = b""
        self.hanging = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.gen is not None:
            self.sim.abandon(self.gen)
            self.gen = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECV_BUF

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_RECV_BUF[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy and not self.hanging:
            self._process(_StampingSelector.t or perf_counter())

    def _process(self, arrival: float) -> None:
        while not self.busy and self.transport is not None:
            buf = self.buf
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > 65536:
                    self.transport.abort()
                return
            lines = buf[:i].split(b"\r\n")
            try:
                method, target, version = lines[0].decode("latin-1").split(" ", 2)
            except ValueError:
                self.transport.abort()
                return
            length = 0
            rid = ""
            self.close_after = version == "HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-request-id":
                    rid = value.strip().decode("latin-1")
                elif name == b"connection":
                    self.close_after = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    self.send_json(411, _error("chunked request bodies are not supported"))
                    self.close_after = True
                    return
            if len(buf) < i + 4 + length:
                return
            body = buf[i + 4 : i + 4 + length]
            self.buf = buf[i + 4 + length :]
            self.busy = True
            self._route(method, target.split("?", 1)[0], body, rid or f"sim-{self.sim.count + 1}", arrival)

    def _route(self, method: str, path: str, body: bytes, rid: str, arrival: float) -> None:
        if path in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                self.send_json(405, _error("use POST"))
                return
            try:
                req = json.loads(body)
                if not isinstance(req, dict):
                    raise ValueError("the body must be a JSON object")
            except ValueError as exc:
                self.send_json(400, _error(f"invalid JSON body: {exc}"))
                return
            self.sim.completion(self, rid, path == "/v1/chat/completions", req, arrival)
        elif path == "/health" and method == "GET":
            self._send(200, b"text/plain", b"OK")
        elif path == "/v1/models" and method == "GET":
            self.send_json(200, {"object": "list", "data": [
                {"id": self.sim.cfg.model, "object": "model", "created": self.sim.created, "owned_by": "benchctl"}]})
        else:
            self.send_json(404, _error(f"no route for {method} {path}", "NotFoundError"))

    # ---------------------------------------------------------------------------- responses

    def write(self, parts: list[str]) -> None:
        data = "".join(parts).encode()
        if self.pending:
            data = self.pending + data
            self.pending = b""
        if self.transport is not None and data:
            self.transport.write(data)

    def flush_pending(self) -> None:
        if self.pending and self.transport is not None:
            self.transport.write(self.pending)
        self.pending = b""

    def response_done(self) -> None:
        self.gen = None
        self.busy = False
        if self.close_after and self.transport is not None:
            self.transport.close()
        elif self.buf:
            self.sim.loop.call_soon(self._process, perf_counter())

    def send_json(self, status: int, obj: Any) -> None:
        self._send(status, b"application/json", json.dumps(obj).encode())

    def _send(self, status: int, ctype: bytes, body: bytes) -> None:
        if self.transport is not None:
            reason = _REASONS.get(status, "Error")
            head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype.decode()}\r\n"
                    f"Content-Length: {len(body)}\r\n").encode()
            if self.close_after:
                head += b"Connection: close\r\n"
            self.transport.write(head + b"\r\n" + body)
        self.response_done()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 500: "Internal Server Error"}


def _frame(event: str) -> str:
    return f"{len(event):x}\r\n{event}\r\n"  # events are ASCII (json.dumps escapes), so len == bytes


def _usage(prompt: int, completion: int) -> str:
    return f',"usage":{{"prompt_tokens":{prompt},"total_tokens":{prompt + completion},"completion_tokens":{completion}}}'


def _error(message: str, kind: str = "BadRequestError") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    if chat:
        messages = body["messages"]
        n = CHAT_TOKENS_REPLY_PREFIX
        for m in messages:
            content = m.get("content") or ""
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            n += CHAT_TOKENS_PER_MESSAGE + len(str(content).split())
        return n
    prompt = body["prompt"]
    if isinstance(prompt, list):
        return sum(len(p.split()) if isinstance(p, str) else 1 for p in prompt)
    return len(str(prompt).split())


# -------------------------------------------------------------------------------------- entry points


async def start(host: str, port: int, config: SimConfig, truth_log: IO[str] | None = None) -> tuple[asyncio.Server, Simulator]:
    """Start serving on the running loop; returns the server (port 0 → read the real port from it)."""
    sim = Simulator(config, truth_log)
    server = await asyncio.get_running_loop().create_server(lambda: _ServerConn(sim), host, port, backlog=4096)
    return server, sim


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    config: SimConfig | None = None,
    truth_log: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run the simulator until SIGINT/SIGTERM. Prints `listening on http://HOST:PORT` once bound."""
    cfg = config or SimConfig()

    async def main() -> None:
        log = open(truth_log, "a", encoding="utf-8") if truth_log else None  # noqa: SIM115
        try:
            server, sim = await start(host, port, cfg, log)
            real_port = server.sockets[0].getsockname()[1]
            (announce or _print)(f"listening on http://{host}:{real_port}")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            server.close()
            sim.flush()
        finally:
            if log is not None:
                log.close()

    loop = asyncio.SelectorEventLoop(_StampingSelector())
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _print(line: str) -> None:
    print(line, flush=True)


def parse_args(argv: list[str] | None = None) -> tuple[str, int, SimConfig, str | None]:
    d = SimConfig()
    p = argparse.ArgumentParser(prog="python -m benchctl.simulator", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--ttft-base-ms", type=float, default=d.ttft_base_ms)
    p.add_argument("--prefill-ms-per-1k", type=float, default=d.prefill_ms_per_1k_tokens)
    p.add_argument("--itl-ms", type=float, default=d.itl_ms)
    p.add_argument("--itl-ms-per-running-seq", type=float, default=d.itl_ms_per_running_seq)
    p.add_argument("--max-running", type=int, default=d.max_running)
    p.add_argument("--tokens-per-chunk", type=int, default=d.tokens_per_chunk)
    p.add_argument("--fail-rate", type=float, default=d.fail_rate)
    p.add_argument("--hang-rate", type=float, default=d.hang_rate)
    p.add_argument("--model", default=d.model)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--strict-openai", action="store_true",
                   help="reject ignore_eos, min_tokens and continuous_usage_stats with 400, like OpenAI")
    p.add_argument("--truth-log", default=None, help="append one JSON line of server-side truth per request")
    a = p.parse_args(argv)
    cfg = SimConfig(a.ttft_base_ms, a.prefill_ms_per_1k, a.itl_ms, a.itl_ms_per_running_seq, a.max_running,
                    a.tokens_per_chunk, a.fail_rate, a.hang_rate, a.model, a.seed, a.strict_openai)
    try:
        cfg.validate()
    except ValueError as exc:
        p.error(str(exc))
    return a.host, a.port, cfg, a.truth_log


def main(argv: list[str] | None = None) -> None:
    host, port, cfg, truth = parse_args(argv)
    try:
        serve(host, port, cfg, truth)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
