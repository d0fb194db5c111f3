"""The memory budget of a net: its blobs are counted from the shapes before any is allocated.

A layer's weights are charged before its filler runs and its tops right after it is built, so a
prototxt asking for a 10^12-float InnerProduct or a huge input stops with the estimate, at net
construction, instead of exhausting the machine. The estimate is a floor: float32 weights plus one
tensor per layer top (what a forward pass keeps for backward); autograd's gradients come on top.
The limit is REPLICATE_MAX_MEMORY (bytes, or 512M, 8G, ...; `--max-memory` sets it, so spawned
workers inherit it), else DEFAULT_FRACTION of the machine's (or the container's) memory.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

from convert.errors import UserError

ENV = "REPLICATE_MAX_MEMORY"
DEFAULT_FRACTION = 0.75
FLOAT_BYTES = 4
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str, what: str = "--max-memory") -> int:
    """Bytes from '123', '512M', '8G', '1.5GiB' (binary units); UserError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"{what} {text!r}: expected a positive size such as 512M or 8G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def machine_memory() -> int:
    """Physical memory, or the cgroup v2 limit when a container has a smaller one."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cgroup.isdigit():
            total = min(total, int(cgroup))
    except OSError:
        pass
    return total


def limit() -> int:
    """The bytes a net's blobs may take (REPLICATE_MAX_MEMORY, else a fraction of the machine's memory)."""
    value = os.environ.get(ENV)
    return parse_size(value, ENV) if value else int(DEFAULT_FRACTION * machine_memory())


def human(n: int | float) -> str:
    """Bytes as '1.5 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


class Budget:
    """The blobs of one net so far; charging past the limit is a UserError with the estimate."""

    def __init__(self, max_bytes: int | None = None):
        self.limit = limit() if max_bytes is None else max_bytes
        self.used = 0

    def charge(self, layer: str, what: str, shape: tuple[int, ...]) -> None:
        """Count a float32 blob of `shape` for `layer` (its `what`: a weight, a top)."""
        needed = math.prod(shape) * FLOAT_BYTES
        if self.used + needed > self.limit:
            raise UserError(f"layer {layer!r}: {what} of shape {tuple(shape)} takes the net's blobs to at least "
                            f"{human(self.used + needed)}, over the limit of {human(self.limit)} (set --max-memory "
                            f"or {ENV} to allow more)")
        self.used += needed
