"""GCP machine notation, without the GCP SDK: used by the GCP stack and by the price table.

The seed writes a GPU host as one string, "n1-standard-8-nvidia-tesla-t4": an N1 machine type plus
attached GPUs (`guest_accelerators`), with an optional "-x2" for two of them. a2/a3/a4/g2/g4 machine
types carry their GPUs built in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GPU_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")
_SEED_NOTATION = re.compile(r"^(?P<machine>[a-z0-9]+-[a-z0-9]+-\d+)-(?P<gpu>nvidia-[a-z0-9-]+?)(?:-x(?P<count>\d+))?$")


@dataclass(frozen=True)
class MachineSpec:
    machine_type: str
    accelerator: str | None = None
    count: int = 0

    @property
    def has_gpu(self) -> bool:
        return self.accelerator is not None or self.machine_type.startswith(GPU_FAMILIES)


def parse_instance_type(value: str) -> MachineSpec:
    """'n1-standard-8-nvidia-tesla-t4' -> n1-standard-8 + 1 x nvidia-tesla-t4; other names unchanged."""
    match = _SEED_NOTATION.match(value)
    if not match:
        return MachineSpec(value)
    return MachineSpec(match["machine"], match["gpu"], int(match["count"] or 1))
