"""The streaming OpenAI client: HTTP/1.1 on asyncio.Protocol, plus the SSE parser.

Why not aiohttp or httpx: the launcher runs the system python3 with nothing installed, and a client
that spends tens of microseconds per streamed chunk becomes the bottleneck it is supposed to measure.
This client decodes chunked framing and SSE in place and parses each event's JSON once. It records raw facts only (send time, the arrival time of every
token-bearing chunk and how many tokens it carried, server usage, status, error); every derived number
is computed in `metrics.py`.

Time base: `time.perf_counter()` (CLOCK_MONOTONIC on Linux). Arrival times are taken when the
selector reports the socket readable (`StampingSelector`), not when the loop gets round to reading
it: with many streams, one poll returns many sockets, and stamping each at its read would add the
parsing time of every socket handled before it. All events of one read share its stamp. Under
another loop (uvloop) the stamp is taken at the read.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import ssl
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

_loads = json.loads
# The C scanner behind json.loads, called directly: json.loads on bytes first sniffs the encoding and
# runs two regex matches, which costs more than the parse itself for a 200-byte chunk.
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# One receive buffer for every connection. asyncio's default read path (sock.recv(256 KiB)) allocates
# 256 KiB per read, which glibc serves with mmap: ~9 us per read. recv_into a reused buffer avoids
# it; sharing is safe because buffer_updated() copies the bytes out before the loop reads again.
_RECV_BUF = memoryview(bytearray(256 * 1024))

# Response parser states.
_HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, _DONE = range(5)
_MAX_HEAD = 64 * 1024


class SSEParser:
    """Incremental text/event-stream parser: bytes in, the `data` payload of each complete event out.

    Follows the SSE rules that matter for LLM streams: events end at a blank line; lines end in
    `\\n`, `\\r\\n` or `\\r` (a `\\r` at the end of one read may pair with a `\\n` at the start of the
    next); several `data:` lines of one event are joined with `\\n`; one leading space after the colon
    is dropped; comments (`:`) and the `event`/`id`/`retry` fields are ignored; an event without data
    is not dispatched; an incomplete event at end of stream is discarded. `[DONE]` is returned like
    any payload: the caller decides what it means.
    """

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False

    def feed(self, data: bytes) -> list[bytes]:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if b"\r" in data:
            if data.endswith(b"\r"):
                data = data[:-1]
                self._cr = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + data if self._buf else data
        events: list[bytes] = []
        start = 0
        find = buf.find
        while True:
            end = find(b"\n\n", start)
            if end < 0:
                break
            # Fast path: one `data: ` line, the shape every OpenAI-compatible server sends.
            if buf.startswith(b"data: ", start) and find(b"\n", start, end) < 0:
                events.append(buf[start + 6 : end])
            else:
                payload = _event_data(buf[start:end])
                if payload is not None:
                    events.append(payload)
            start = end + 2
        self._buf = buf[start:] if start < len(buf) else b""
        return events


def _event_data(block: bytes) -> bytes | None:
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
    return b"\n".join(data) if data else None


@dataclass(slots=True)
class RequestRecord:
    """The raw facts of one request. Times are perf_counter() seconds; nothing here is derived."""

    id: str
    scheduled: float = 0.0  # when the pattern wanted it sent
    sent: float = 0.0  # just before the request bytes were written
    end: float | None = None  # last byte of the response
    chunk_times: list[float] = field(default_factory=list)  # arrival of each token-bearing chunk
    chunk_tokens: list[int] = field(default_factory=list)  # tokens carried by each of those chunks
    prompt_tokens: int | None = None  # server usage
    completion_tokens: int | None = None  # server usage (final, else the last continuous count)
    continuous_usage: bool = False  # token counts per chunk came from the server's running usage
    status: int | None = None
    error: str | None = None  # None, or a short reason: http_500, timeout, disconnected, ...
    detail: str | None = None  # a human hint for the error (first bytes of the error body)
    timed_out: bool = False
    warmup: bool = False
    max_tokens: int = 0  # the output length asked for (0: not a generation request)
    body: bytes | None = None  # the body of a non-streaming response (models list, errors)


class _PollClock:
    """The perf_counter() of the latest selector poll, or None outside a stamping loop."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t: float | None = None


_POLL = _PollClock()


class StampingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The default selector, plus the time each poll returned: the arrival stamp of what it reports."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(timeout)
        _POLL.t = perf_counter()
        return events  # type: ignore[no-any-return]

    def close(self) -> None:
        _POLL.t = None
        super().close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop whose reads are stamped at poll time (see the module docstring)."""
    return asyncio.SelectorEventLoop(StampingSelector())


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection that parses one response at a time into a RequestRecord."""

    def __init__(self, pool: Client) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.served = 0
        self.rec: RequestRecord | None = None
        self.waiter: asyncio.Future[bool] | None = None
        self.chat = True
        self._state = _DONE
        self._head = b""
        self._remaining = 0
        self._cbuf = b""
        self._skip = 0
        self._keep_alive = True
        self._got_bytes = False
        self._last_ct = 0
        self._sse: SSEParser | None = None
        self._body: list[bytes] = []

    # ---------------------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._all.discard(self)
        rec = self.rec
        if rec is None or self._state == _DONE:
            return
        if self._state == _UNTIL_CLOSE:
            self._finish(perf_counter())
        elif not self._got_bytes and self.served > 0:
            self._resolve(True)  # a stale keep-alive connection: the caller retries on a fresh one
        else:
            self._fail("disconnected", str(exc) if exc else "server closed the connection mid-response")

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECV_BUF

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_RECV_BUF[:nbytes]))

    def data_received(self, data: bytes) -> None:
        t = _POLL.t
        if t is None:
            t = perf_counter()
        rec = self.rec
        if rec is None or self._state == _DONE:
            if self.transport is not None:
                self.transport.abort()  # bytes nobody asked for: this connection is unusable
            return
        self._got_bytes = True
        if self._state == _HEAD:
            buf = self._head + data if self._head else data
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > _MAX_HEAD:
                    self._fail("bad_response", "response head too large")
                else:
                    self._head = buf
                return
            self._head = b""
            if not self._parse_head(buf[:i], rec):
                return
            data = buf[i + 4 :]
            if self._state == _HEAD:  # an interim 1xx response; the real one follows
                if data:
                    self.data_received(data)
                return
            if self._state == _DONE:
                self._finish(t)
                return
        state = self._state
        if state == _CHUNKED:
            payload = self._dechunk(data)
        elif state == _LENGTH:
            payload = data[: self._remaining]
            self._remaining -= len(payload)
            if self._remaining == 0:
                self._state = _DONE
        else:
            payload = data
        if self.rec is None:
            return  # the framing was bad and the request already failed
        if payload:
            sse = self._sse
            if sse is not None:
                for ev in sse.feed(payload):
                    self._on_event(ev, t, rec)
                    if self.rec is None:
                        return  # the event failed the request
            else:
                self._body.append(payload)
        if self._state == _DONE:
            self._finish(t)

    # ---------------------------------------------------------------------------- parsing

    def _parse_head(self, head: bytes, rec: RequestRecord) -> bool:
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self._fail("bad_response", f"bad status line {lines[0][:80]!r}")
            return False
        if 100 <= status < 200:
            return True  # stay in _HEAD
        version = parts[0]
        chunked = False
        length: int | None = None
        ctype = b""
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    self._fail("bad_response", "bad Content-Length")
                    return False
            elif name == b"content-type":
                ctype = value.strip().lower()
            elif name == b"connection":
                v = value.strip().lower()
                if v == b"close":
                    keep_alive = False
                elif v == b"keep-alive":
                    keep_alive = True
        rec.status = status
        self._keep_alive = keep_alive
        self._sse = SSEParser() if status == 200 and ctype.startswith(b"text/event-stream") else None
        if chunked:
            self._state = _CHUNKED
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH if length > 0 else _DONE
        elif status in (204, 304):
            self._state = _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
        return True

    def _dechunk(self, data: bytes) -> bytes:
        """Strip chunked transfer framing. State across reads: the bytes of chunk data still due
        (`_remaining`), the CRLF bytes after a chunk still to skip (`_skip`), and an incomplete size
        line or last-chunk trailer (`_cbuf`)."""
        buf = self._cbuf + data if self._cbuf else data
        self._cbuf = b""
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        remaining = self._remaining
        skip = self._skip
        while pos < n:
            if skip:
                take = min(skip, n - pos)
                pos += take
                skip -= take
                continue
            if remaining:
                end = pos + remaining
                if end <= n:
                    out.append(buf[pos:end])
                    pos = end
                    remaining = 0
                    skip = 2
                else:
                    out.append(buf[pos:])
                    remaining = end - n
                    pos = n
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                self._cbuf = buf[pos:]
                break
            try:
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                self._fail("bad_response", "bad chunk size")
                return b""
            if size == 0:  # the last chunk: optional trailers, then an empty line
                if buf.startswith(b"\r\n", eol + 2) or buf.find(b"\r\n\r\n", eol + 2) >= 0:
                    self._state = _DONE
                else:
                    self._cbuf = buf[pos:]
                break
            remaining = size
            pos = eol + 2
        self._remaining = remaining
        self._skip = skip
        return out[0] if len(out) == 1 else b"".join(out)

    def _on_event(self, ev: bytes, t: float, rec: RequestRecord) -> None:
        if ev == b"[DONE]":
            return
        try:
            obj = _scan(ev.decode(), 0)[0]
        except (StopIteration, ValueError):
            try:
                obj = _loads(ev)  # leading whitespace, or a real error with a real message
            except ValueError:
                self._fail("bad_response", f"invalid JSON in stream: {ev[:80]!r}")
                return
        if type(obj) is not dict:
            self._fail("bad_response", f"unexpected stream event: {ev[:80]!r}")
            return
        choices = obj.get("choices")
        usage = obj.get("usage")
        if choices:
            ct = usage.get("completion_tokens") if type(usage) is dict else None
            if ct is not None:
                # Continuous usage (vLLM's continuous_usage_stats): tokens in this chunk = delta.
                k = ct - self._last_ct
                self._last_ct = ct
                rec.continuous_usage = True
            else:
                c0 = choices[0]
                if self.chat:
                    d = c0.get("delta")
                    text = d and (
                        d.get("content") or d.get("reasoning_content") or d.get("reasoning") or d.get("tool_calls")
                    )
                else:
                    text = c0.get("text")
                k = 1 if text else 0
            if k > 0:
                rec.chunk_times.append(t)
                rec.chunk_tokens.append(k)
        elif obj.get("error") is not None and usage is None:
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            self._fail("stream_error", str(msg)[:200])
            return
        if type(usage) is dict:
            pt = usage.get("prompt_tokens")
            if pt is not None:
                rec.prompt_tokens = pt
            ct = usage.get("completion_tokens")
            if ct is not None:
                rec.completion_tokens = ct

    # ---------------------------------------------------------------------------- exchange lifecycle

    def begin(self, rec: RequestRecord, waiter: asyncio.Future[bool], chat: bool) -> None:
        self.rec = rec
        self.waiter = waiter
        self.chat = chat
        self._state = _HEAD
        self._head = b""
        self._cbuf = b""
        self._remaining = 0
        self._skip = 0
        self._got_bytes = False
        self._last_ct = 0
        self._sse = None
        self._body = []

    def _finish(self, t: float) -> None:
        rec = self.rec
        assert rec is not None
        rec.end = t
        self._state = _DONE
        status = rec.status or 0
        if self._sse is None:
            rec.body = b"".join(self._body)
            self._body = []
        if status >= 400 or status < 200:
            rec.error = f"http_{status}"
            if rec.body:
                rec.detail = rec.body[:300].decode("utf-8", "replace")
        elif self._sse is not None and not rec.chunk_times:
            rec.error = "no_tokens"
            rec.detail = "the stream ended without a token-bearing chunk"
        self.served += 1
        reuse = self._keep_alive and not self.closed
        self._resolve(False)
        if reuse:
            self.pool._release(self)
        elif self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str, detail: str | None = None) -> None:
        rec = self.rec
        if rec is not None and rec.error is None:
            rec.error = reason
            rec.detail = detail
            rec.end = perf_counter()
        self._state = _DONE
        if self.transport is not None:
            self.transport.abort()
        self.closed = True
        self._resolve(False)

    def _resolve(self, retry: bool) -> None:
        waiter = self.waiter
        self.rec = None
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(retry)

    def on_timeout(self) -> None:
        rec = self.rec
        if rec is not None:
            rec.timed_out = True
            self._fail("timeout", "no complete response before the timeout")


class Client:
    """A keep-alive connection pool to one server, speaking just enough HTTP/1.1 for OpenAI APIs."""

    def __init__(self, base_url: str, api_key: str | None = None, user_agent: str = "benchctl") -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if u.scheme == "https" else None
        path = u.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[:-3]
        self.api_base = path + "/v1"
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if u.scheme == "https" else 80
        host_header = host if self.port == default_port else f"{host}:{self.port}"
        extra = f"Host: {host_header}\r\nUser-Agent: {user_agent}\r\nAccept: application/json, text/event-stream\r\n"
        if api_key:
            extra += f"Authorization: Bearer {api_key}\r\n"
        self._extra = extra
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    # ---------------------------------------------------------------------------- pool

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl)
        self._all.add(proto)
        return proto

    def _release(self, conn: _Connection) -> None:
        self._idle.append(conn)

    async def prewarm(self, n: int, timeout_s: float = 10.0) -> None:
        """Open connections until `n` are idle, so a load point does not time TCP handshakes."""
        self._idle = [c for c in self._idle if not c.closed]
        missing = n - len(self._idle)
        if missing <= 0:
            return
        results = await asyncio.gather(
            *(asyncio.wait_for(self._connect(), timeout_s) for _ in range(missing)), return_exceptions=True
        )
        self._idle.extend(r for r in results if isinstance(r, _Connection))

    def close(self) -> None:
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.abort()
        self._all.clear()
        self._idle.clear()

    # ---------------------------------------------------------------------------- requests

    async def request(
        self,
        rec: RequestRecord,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        timeout_s: float,
        chat: bool = True,
    ) -> RequestRecord:
        """Send one request and fill `rec` from its response. Never raises for a failed request:
        failures are recorded as `rec.error` (only cancellation propagates)."""
        loop = asyncio.get_running_loop()
        head = f"{method} {self.api_base}{path} HTTP/1.1\r\n{self._extra}X-Request-Id: {rec.id}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        else:
            head += "\r\n"
        data = head.encode("latin-1") + body
        for _attempt in range(2):
            conn = None
            idle = self._idle
            while idle:
                c = idle.pop()
                if not c.closed:
                    conn = c
                    break
            if conn is None:
                try:
                    conn = await asyncio.wait_for(self._connect(), timeout_s)
                except (OSError, asyncio.TimeoutError) as exc:
                    rec.error = "connect_error"
                    rec.sent = rec.end = perf_counter()
                    rec.detail = f"cannot connect to {self.host}:{self.port}: {exc or 'timed out'}"
                    return rec
            waiter: asyncio.Future[bool] = loop.create_future()
            conn.begin(rec, waiter, chat)
            rec.sent = perf_counter()
            assert conn.transport is not None
            conn.transport.write(data)
            handle = loop.call_at(loop.time() + timeout_s, conn.on_timeout)
            try:
                retry = await waiter
            except asyncio.CancelledError:
                if conn.rec is rec:
                    conn._fail("cancelled", "the run stopped before this request finished")
                raise
            finally:
                handle.cancel()
            if not retry:
                return rec
            rec.chunk_times.clear()
            rec.chunk_tokens.clear()
            rec.status = None
        rec.error = "disconnected"
        rec.detail = "the server closed two connections in a row before answering"
        return rec

    async def get_json(self, path: str, timeout_s: float = 30.0) -> tuple[int | None, Any, str | None]:
        """GET a JSON document: (status, parsed body or None, error reason or None)."""
        rec = RequestRecord(id="benchctl-get")
        await self.request(rec, "GET", path, timeout_s=timeout_s)
        if rec.error:
            return rec.status, None, f"{rec.error}: {rec.detail}" if rec.detail else rec.error
        try:
            return rec.status, json.loads(rec.body or b"null"), None
        except ValueError:
            return rec.status, None, "bad_response: not JSON"
