"""Prompts: synthetic ones of a calibrated length, or prompts from a JSONL or ShareGPT file.

No tokenizer is downloaded (none may be reachable, and a mismatched one is wrong anyway). Synthetic
prompts are random sequences of common English words, each one token with its leading space in the
usual BPE vocabularies; `calibrate()` then asks the server itself: it sends a few prompts of known
word counts with max_tokens=1, fits tokens = template + slope * words from `usage.prompt_tokens`,
and refines the word count until the server reports the asked input length. Random words (seeded)
make every prompt distinct, so prefix caching cannot turn the benchmark into a cache benchmark.

Files: JSONL, one prompt per line, as a JSON string or an object with `prompt` (or `text`, or chat
`messages`, whose last user message is used), plus an optional `output_tokens`/`max_tokens`; or a
ShareGPT JSON list of `{"conversations": [{"from": "human", "value": ...}, ...]}`, whose first human
turn is the prompt. File prompts are shuffled with the seed and cycled.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchctl.load.spec import SpecError

_WORDS_TEXT = (
    "the of and to in is was for that on as with by he at from his an were are which this be or "
    "has had not but first one their its new after who they have her she two been other when there "
    "all during into school time may years more most only over city some world would where later up "
    "such used many can state about national out known university united then made team american "
    "film while year because these between both being under well through since called three part "
    "people work high no age water house life game play long small great light open power line land "
    "music book story field river road club war group place order family around each left right end"
)
WORDS = _WORDS_TEXT.split()


@dataclass(frozen=True)
class Prompt:
    text: str
    output_tokens: int


class SyntheticPrompts:
    """Distinct random-word prompts of `words` words each (set by calibrate())."""

    def __init__(self, words: int, output_tokens: int, seed: int) -> None:
        self.words = words
        self.output_tokens = output_tokens
        self.rng = random.Random(f"synthetic:{seed}")

    def make(self, words: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=words))

    def next(self) -> Prompt:
        return Prompt(self.make(self.words), self.output_tokens)


class FilePrompts:
    """Prompts from a file, shuffled with the seed, cycled when the run needs more."""

    def __init__(self, prompts: list[Prompt], seed: int) -> None:
        self.prompts = list(prompts)
        random.Random(f"dataset:{seed}").shuffle(self.prompts)
        self.i = 0

    def next(self) -> Prompt:
        p = self.prompts[self.i % len(self.prompts)]
        self.i += 1
        return p


def load_prompts(path: str | Path, output_tokens: int) -> list[Prompt]:
    """Read a JSONL or ShareGPT JSON file. Raises SpecError with the line number on bad content."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read dataset {p}: {exc.strerror or exc}") from None
    prompts: list[Prompt] = []
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"dataset {p}: not valid JSON: {exc}") from None
        for i, row in enumerate(rows):
            prompt = _from_row(row, output_tokens)
            if prompt is None:
                raise SpecError(f"dataset {p}: entry {i} has no prompt (expected ShareGPT 'conversations')")
            prompts.append(prompt)
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise SpecError(f"dataset {p}:{n}: not a JSON line") from None
            prompt = _from_row(row, output_tokens)
            if prompt is None:
                raise SpecError(f"dataset {p}:{n}: expected a string or an object with 'prompt'")
            prompts.append(prompt)
    prompts = [x for x in prompts if x.text.strip()]
    if not prompts:
        raise SpecError(f"dataset {p} holds no prompts")
    return prompts


def _from_row(row: Any, output_tokens: int) -> Prompt | None:
    if isinstance(row, str):
        return Prompt(row, output_tokens)
    if not isinstance(row, dict):
        return None
    out = row.get("output_tokens") or row.get("max_tokens") or output_tokens
    if not isinstance(out, int) or out < 1:
        out = output_tokens
    for key in ("prompt", "text"):
        if isinstance(row.get(key), str):
            return Prompt(row[key], out)
    if isinstance(row.get("messages"), list):
        users = [m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1], str):
            return Prompt(users[-1], out)
    if isinstance(row.get("conversations"), list):
        for turn in row["conversations"]:
            if isinstance(turn, dict) and turn.get("from") in ("human", "user") and isinstance(turn.get("value"), str):
                return Prompt(turn["value"], out)
    return None


async def calibrate(target: int, measure: Callable[[int], Awaitable[int | None]]) -> tuple[int, dict[str, Any]]:
    """Find the word count whose prompts the server counts as `target` tokens.

    `measure(words)` sends one prompt of that many words and returns the server's prompt_tokens (None
    when the server reports no usage; then words = tokens is assumed, and the result says so).
    """
    wa = max(4, target // 2)
    wb = wa + max(8, target // 2)
    ua = await measure(wa)
    ub = await measure(wb) if ua is not None else None
    if ua is None or ub is None:
        return target, {"method": "assumed_one_token_per_word", "words": target, "target": target}
    slope = (ub - ua) / (wb - wa) if ub > ua else 1.0
    template = ua - slope * wa
    words = max(1, round((target - template) / slope))
    measured: int | None = None
    for attempt in range(4):
        measured = await measure(words)
        if measured is None or measured == target or attempt == 3:
            break
        nxt = max(1, words + round((target - measured) / slope))
        if nxt == words:
            break
        words = nxt
    return words, {
        "method": "server_usage",
        "target": target,
        "words": words,
        "prompt_tokens": measured,
        "tokens_per_word": round(slope, 4),
        "template_tokens": round(template, 2),
    }
