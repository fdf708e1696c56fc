"""Disk sizes shared by every cloud: big enough for the model, its container image and the OS.

The heuristic, when `[<cloud>].root_volume_gb` is not set:

    GPU host: 2.5 GB per billion parameters (read from the model name) + 60 GB, at least 100 GB
    launcher: 20 GB

2.5 GB per billion parameters covers 16-bit weights (2 GB/B) plus tokenizer, config and the
safetensors/HF cache slack; 60 GB covers the engine's container image (vLLM and SGLang images are
10-20 GB) and the OS image itself (the AWS Deep Learning AMI alone is about 45 GB). When the name
carries no size ("gpt2", "my-org/custom"), the minimum applies. Examples: Llama-3.1-8B -> 100 GB,
Qwen2.5-32B -> 140 GB, Llama-3.1-70B -> 235 GB, Mixtral-8x7B -> 200 GB.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchctl.config import BenchConfig

GB_PER_BILLION_PARAMS = 2.5
BASE_GB = 60
GPU_MIN_GB = 100
LAUNCHER_GB = 20

# "8x7B" (mixture of experts), then "70B", "0.5B", "1.5b"; the size must stand alone in the name.
_MOE = re.compile(r"(?<![a-z0-9.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z0-9])", re.IGNORECASE)
_DENSE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?![a-z0-9])", re.IGNORECASE)


def model_params_billion(model: str | None) -> float | None:
    """Parameters in billions as written in the model name ("meta-llama/Llama-3.1-8B" -> 8.0), else None."""
    if not model:
        return None
    name = model.rsplit("/", 1)[-1].replace("_", "-")
    moe = _MOE.search(name)
    if moe:
        return int(moe.group(1)) * float(moe.group(2))
    dense = _DENSE.findall(name)
    return max(float(v) for v in dense) if dense else None


def gpu_disk_gb(cfg: BenchConfig) -> int:
    """Root disk of the GPU host: `root_volume_gb` when given, else the heuristic above."""
    cloud = cfg.cloud
    if cloud is not None and cloud.root_volume_gb:
        return cloud.root_volume_gb
    params = model_params_billion(cfg.model)
    if params is None:
        return GPU_MIN_GB
    return max(GPU_MIN_GB, math.ceil(GB_PER_BILLION_PARAMS * params + BASE_GB))
