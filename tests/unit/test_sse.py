"""The SSE parser and the response parser, without a server: bytes in, events and records out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from benchctl.load import request as req
from benchctl.load.request import RequestRecord, SSEParser


def feed_all(parser: SSEParser, pieces: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for p in pieces:
        out.extend(parser.feed(p))
    return out


STREAM = (
    b'data: {"a": 1}\n\n'
    b": keep-alive comment\n\n"
    b"event: message\nid: 7\nretry: 100\ndata: two\ndata: lines\n\n"
    b"data:no-space\n\n"
    b"event: ping\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b"two\nlines", b"no-space", b"[DONE]"]


def test_whole_stream() -> None:
    assert SSEParser().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_split_across_reads_at_every_size(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert feed_all(SSEParser(), pieces) == EXPECTED


def test_crlf_and_cr_line_endings_even_split_between_cr_and_lf() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    for cut in range(1, len(crlf)):
        assert feed_all(SSEParser(), [crlf[:cut], crlf[cut:]]) == EXPECTED, cut
    cr = SSEParser()
    # A CR that ends a read may be the first half of CRLF, so it waits for the next byte.
    assert cr.feed(STREAM.replace(b"\n", b"\r")) == EXPECTED[:-1]
    assert cr.feed(b"\n") == EXPECTED[-1:]


def test_incomplete_event_is_held_until_its_blank_line() -> None:
    p = SSEParser()
    assert p.feed(b"data: partial") == []
    assert p.feed(b"\n") == []
    assert p.feed(b"\ndata: next\n\n") == [b"partial", b"next"]


def test_extra_blank_lines_and_events_without_data_dispatch_nothing() -> None:
    assert SSEParser().feed(b"\n\n\n\nid: 1\n\ndata: x\n\n\n\n") == [b"x"]


def test_empty_data_line_is_an_empty_payload() -> None:
    assert SSEParser().feed(b"data\n\ndata:\n\n") == [b"", b""]


# ------------------------------------------------------------------------------ full HTTP responses


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


class FakePool:
    def __init__(self) -> None:
        self._all: set[Any] = set()
        self.released: list[Any] = []

    def _release(self, conn: Any) -> None:
        self.released.append(conn)


def sse_event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunked(*events: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def run_response(reads: list[bytes], monkeypatch: pytest.MonkeyPatch, chat: bool = True) -> tuple[RequestRecord, FakePool]:
    """Feed raw response bytes, read i stamped at t = i + 1 seconds; the request was sent at t = 0."""
    clock = iter(range(1, 1000))
    monkeypatch.setattr(req, "perf_counter", lambda: float(next(clock)))
    loop = asyncio.new_event_loop()
    try:
        pool = FakePool()
        conn = req._Connection(pool)  # type: ignore[arg-type]
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        rec = RequestRecord(id="r", sent=0.0)
        conn.begin(rec, loop.create_future(), chat)
        for r in reads:
            conn.data_received(r)
        return rec, pool
    finally:
        loop.close()


def chat_chunk(content: str | None = None, role: bool = False, usage: dict[str, int] | None = None,
               choices: bool = True) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
        delta["content"] = ""
    if content is not None:
        delta["content"] = content
    obj: dict[str, Any] = {"choices": [{"index": 0, "delta": delta}] if choices else []}
    if usage is not None:
        obj["usage"] = usage
    return sse_event(obj)


def test_role_only_chunk_is_not_a_token_and_usage_only_chunk_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = [
        HEAD + b"%x\r\n%s\r\n" % (len(chat_chunk(role=True)), chat_chunk(role=True)),  # t=1: role only
        chunked(chat_chunk("Hel"), chat_chunk("lo"))[:-5],  # t=2: two tokens in one read
        chunked(chat_chunk(usage={"prompt_tokens": 9, "completion_tokens": 2}, choices=False),
                b"data: [DONE]\n\n"),  # t=3: usage-only chunk, then the end
    ]
    rec, pool = run_response(reads, monkeypatch)
    assert rec.error is None
    assert rec.chunk_times == [2.0, 2.0]  # the role-only chunk at t=1 is not the first token
    assert rec.chunk_tokens == [1, 1]
    assert (rec.prompt_tokens, rec.completion_tokens, rec.continuous_usage) == (9, 2, False)
    assert rec.end == 3.0
    assert len(pool.released) == 1  # keep-alive connection returned to the pool


def test_continuous_usage_gives_tokens_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        chat_chunk(role=True, usage={"prompt_tokens": 5, "completion_tokens": 0}),
        chat_chunk("a", usage={"prompt_tokens": 5, "completion_tokens": 1}),
        chat_chunk("b c d e", usage={"prompt_tokens": 5, "completion_tokens": 5}),
        chat_chunk(usage={"prompt_tokens": 5, "completion_tokens": 5}, choices=False),
    ]
    body = chunked(*events, b"data: [DONE]\n\n")
    # Split the HTTP body one byte at a time: chunk framing and SSE must both survive any split.
    reads = [HEAD] + [body[i : i + 1] for i in range(len(body))]
    rec, _ = run_response(reads, monkeypatch)
    assert rec.error is None
    assert rec.chunk_tokens == [1, 4]
    assert rec.continuous_usage is True
    assert rec.completion_tokens == 5


def test_completions_text_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [sse_event({"choices": [{"index": 0, "text": t}]}) for t in ("x", "", "y")]
    rec, _ = run_response([HEAD + chunked(*events, b"data: [DONE]\n\n")], monkeypatch, chat=False)
    assert rec.chunk_tokens == [1, 1]  # the empty text chunk carries no token
    assert rec.completion_tokens is None  # no usage: counts come from chunks


def test_http_error_with_content_length_body(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b'{"error": {"message": "bad"}}'
    raw = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    rec, _ = run_response([raw[:20], raw[20:]], monkeypatch)
    assert rec.status == 400 and rec.error == "http_400"
    assert rec.body == body and "bad" in (rec.detail or "")


def test_mid_stream_error_event_fails_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [chat_chunk("a"), sse_event({"error": {"message": "engine died"}})]
    rec, _ = run_response([HEAD + chunked(*events)], monkeypatch)
    assert rec.error == "stream_error" and rec.detail == "engine died"


def test_stream_without_tokens_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    rec, _ = run_response([HEAD + chunked(chat_chunk(role=True), b"data: [DONE]\n\n")], monkeypatch)
    assert rec.error == "no_tokens"


def test_close_delimited_body(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + chat_chunk("hi")
    clock = iter(range(1, 100))
    monkeypatch.setattr(req, "perf_counter", lambda: float(next(clock)))
    loop = asyncio.new_event_loop()
    try:
        conn = req._Connection(FakePool())  # type: ignore[arg-type]
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        rec = RequestRecord(id="r")
        conn.begin(rec, loop.create_future(), True)
        conn.data_received(raw)
        assert rec.end is None  # the body ends only when the server closes
        conn.connection_lost(None)
        assert rec.error is None and rec.chunk_tokens == [1] and rec.end is not None
    finally:
        loop.close()
