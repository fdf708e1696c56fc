"""LoadSpec: everything one load test needs, as a plain dataclass that round-trips through JSON.

The field names are those of the `[benchmark]` section of bench.toml, so the lead's code can pass that
section through as a dict. The spec travels to the launcher as `spec.json`; `to_dict()` never writes
the API key (it is read from the environment there: BENCHCTL_API_KEY or OPENAI_API_KEY).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

SLO_KEYS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
APIS = ("chat", "completions")
ARRIVALS = ("constant", "poisson")


class SpecError(ValueError):
    """The spec cannot work (bad value, unknown key). The runner exits 2 on it."""


@dataclass
class LoadSpec:
    """One load test: a target, a request shape, and a sweep of load points.

    Without `rate`, each entry of `concurrency` is one closed-loop point (that many requests always in
    flight). With `rate`, each rate is one open-loop point (arrivals at that rate, constant or Poisson)
    and `max(concurrency)` caps the requests in flight. `requests` and `duration_s` bound the measured
    window of each point; with both, whichever is reached first ends it.

    `engine` is a hint: every engine is first sent ignore_eos/min_tokens/continuous usage, and what it
    rejects with HTTP 400 is dropped and recorded; "openai" skips the attempt. `strict` makes a
    client-bound point fail the run. Definitions of everything measured: docs/metrics.md.
    """

    target: str
    model: str | None = None
    api_key: str | None = None
    api: str = "chat"
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16])
    rate: list[float] | None = None
    arrival: str = "poisson"
    requests: int | None = 200
    duration_s: float | None = None
    warmup: int = 8
    input_tokens: int = 128
    output_tokens: int = 64
    dataset: str | None = None
    slo: dict[str, float] = field(default_factory=dict)
    timeout_s: float = 300.0
    max_error_rate: float = 0.5
    seed: int = 0
    strict: bool = False
    engine: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ---------------------------------------------------------------------------------- validation

    def validate(self) -> None:
        """Normalise scalars to lists and raise SpecError with one clear sentence on a bad value."""
        if not isinstance(self.target, str) or not self.target.startswith(("http://", "https://")):
            raise SpecError(f"target must be an http:// or https:// URL, got {self.target!r}")
        if self.api not in APIS:
            raise SpecError(f"api must be one of {', '.join(APIS)}, got {self.api!r}")
        if self.arrival not in ARRIVALS:
            raise SpecError(f"arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if isinstance(self.concurrency, int) and not isinstance(self.concurrency, bool):
            self.concurrency = [self.concurrency]
        if not isinstance(self.concurrency, list) or not self.concurrency:
            raise SpecError("concurrency must be a positive integer or a non-empty list of them")
        for c in self.concurrency:
            if not _is_int(c) or c < 1:
                raise SpecError(f"concurrency values must be positive integers, got {c!r}")
        if self.rate is not None:
            if _is_num(self.rate):
                self.rate = [float(self.rate)]  # type: ignore[arg-type]
            if not isinstance(self.rate, list) or not self.rate:
                raise SpecError("rate must be a positive number or a non-empty list of them")
            for r in self.rate:
                if not _is_num(r) or not math.isfinite(r) or r <= 0:
                    raise SpecError(f"rate values must be positive numbers (requests/s), got {r!r}")
            self.rate = [float(r) for r in self.rate]
        if self.requests is None and self.duration_s is None:
            raise SpecError("give requests or duration_s (or both): a point needs an end")
        if self.requests is not None and (not _is_int(self.requests) or self.requests < 1):
            raise SpecError(f"requests must be a positive integer, got {self.requests!r}")
        if self.duration_s is not None and (not _is_num(self.duration_s) or self.duration_s <= 0):
            raise SpecError(f"duration_s must be a positive number of seconds, got {self.duration_s!r}")
        for name in ("warmup",):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise SpecError(f"{name} must be an integer >= 0, got {v!r}")
        for name in ("input_tokens", "output_tokens"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise SpecError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.slo, dict):
            raise SpecError("slo must be a mapping such as {'ttft_ms': 500, 'tpot_ms': 50}")
        for k, v in self.slo.items():
            if k not in SLO_KEYS:
                raise SpecError(f"unknown SLO {k!r}; expected one of {', '.join(SLO_KEYS)}")
            if not _is_num(v) or v <= 0:
                raise SpecError(f"SLO {k} must be a positive number of milliseconds, got {v!r}")
        self.slo = {k: float(v) for k, v in self.slo.items()}
        if not _is_num(self.timeout_s) or self.timeout_s <= 0:
            raise SpecError(f"timeout_s must be a positive number of seconds, got {self.timeout_s!r}")
        if not _is_num(self.max_error_rate) or not 0 < self.max_error_rate <= 1:
            raise SpecError(f"max_error_rate must be in (0, 1], got {self.max_error_rate!r}")
        if not _is_int(self.seed):
            raise SpecError(f"seed must be an integer, got {self.seed!r}")

    # ---------------------------------------------------------------------------------- helpers

    def resolved_api_key(self) -> str | None:
        """The key to send: the spec's, else BENCHCTL_API_KEY, else OPENAI_API_KEY."""
        return self.api_key or os.environ.get("BENCHCTL_API_KEY") or os.environ.get("OPENAI_API_KEY")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field except `api_key` (a secret never lands in a file)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        out["concurrency"] = list(self.concurrency)
        out["rate"] = list(self.rate) if self.rate is not None else None
        out["slo"] = dict(self.slo)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadSpec:
        """Build and validate a spec; unknown keys are an error, not silently dropped."""
        if not isinstance(data, dict):
            raise SpecError("a spec must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec key(s): {', '.join(unknown)}")
        if "target" not in data:
            raise SpecError("missing key 'target' (the server's base URL)")
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - guarded by the key check above
            raise SpecError(str(exc)) from None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------- flag parsing


def parse_int_list(text: str, flag: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16] for command-line flags; SpecError names the flag on a bad value."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise SpecError(f"{flag}: expected positive integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise SpecError(f"{flag}: expected positive integers separated by commas, got {text!r}")
    return values


def parse_float_list(text: str, flag: str) -> list[float]:
    """'5,10.5' -> [5.0, 10.5]."""
    try:
        values = [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise SpecError(f"{flag}: expected positive numbers separated by commas, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise SpecError(f"{flag}: expected positive numbers separated by commas, got {text!r}")
    return values


def parse_slo(text: str) -> dict[str, float]:
    """'ttft_ms=500,tpot_ms=50' -> {'ttft_ms': 500.0, 'tpot_ms': 50.0}."""
    out: dict[str, float] = {}
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or key not in SLO_KEYS:
            raise SpecError(f"--slo: expected KEY=MS pairs with KEY in {', '.join(SLO_KEYS)}, got {item!r}")
        try:
            v = float(value)
        except ValueError:
            raise SpecError(f"--slo: {key} needs a number of milliseconds, got {value!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise SpecError(f"--slo: {key} must be a positive number of milliseconds, got {value!r}")
        out[key] = v
    if not out:
        raise SpecError("--slo: expected KEY=MS pairs such as ttft_ms=500,tpot_ms=50")
    return out
