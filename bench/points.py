"""The benchmark's vocabulary and its one record type.

A ``Point`` is one measured (model, strategy, s, runtime, precision, batch) of a sweep as the
results store keeps it and as the analysis, plots and report read it. Its ``status`` is one of
``Status``; its figure is ``latency_ms`` with a 95% confidence interval
``[latency_lo_ms, latency_hi_ms]`` (see ``fsrt.bench.rounds`` for how it is measured).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from enum import Enum

# How a figure is computed: stored with each point, shown in every report.
from fsrt.bench.stats import STATISTIC as STATISTIC


class Status(str, Enum):
    """What became of a point. ``str`` so it stores and prints as its value."""

    OK = "ok"  # measured; its confidence interval met the target
    UNSTABLE = "unstable"  # measured, but its interval stayed wider than the target (budget or max rounds)
    PARITY_FAILED = "parity_failed"  # the timed call's outputs did not match the float64 reference
    ERROR = "error"  # the runtime could not prepare or run the model

    def __str__(self) -> str:
        return self.value


MEASURED = (Status.OK, Status.UNSTABLE)  # statuses whose figure counts in fits and comparisons
DONE = (Status.OK, Status.UNSTABLE, Status.PARITY_FAILED)  # statuses a resumed sweep does not measure again



@dataclass(frozen=True)
class Point:
    """One stored benchmark point. Times in milliseconds, memory in bytes.

    Identity: ``key`` names the point (its measurement plus the strategy and s it is reported
    under); ``mkey`` names the measurement itself, so the unscaled base model measured once
    and listed under several strategies shares one ``mkey``.
    """

    model: str | None = None
    base: str | None = None
    family: str | None = None
    strategy: str | None = None
    alpha: float | None = None
    e_d: float | None = None
    e_w: float | None = None
    e_r: float | None = None
    s: float | None = None
    flops_mult: float | None = None
    runtime: str | None = None
    mode: str | None = None  # what one timed call is: "infer" (a forward pass) or "train" (a training step)
    precision: str | None = None
    batch: int | None = None
    resolution: int | None = None
    device: str | None = None
    threads: int | None = None
    flops: int | None = None
    params: int | None = None
    acts: int | None = None
    layers: int | None = None  # conv and fully connected layers (a per-layer dispatch cost term)
    status: str | None = None
    reason: str | None = None  # why a point failed (error or parity failure); empty when measured
    note: str | None = None  # the precision and options the runtime actually applied
    mkey: str | None = None
    latency_ms: float | None = None
    latency_lo_ms: float | None = None
    latency_hi_ms: float | None = None
    statistic: str | None = None
    rounds: int | None = None
    dropped_rounds: int | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    cv: float | None = None
    n: int | None = None
    peak_mem_bytes: int | None = None
    mem_kind: str | None = None
    # train points: the step's forward (with the loss) and backward (with the optimizer step), timed
    # in the same calls as the step, each with its 95% interval (see ``fsrt.bench.step_parts``)
    forward_ms: float | None = None
    forward_lo_ms: float | None = None
    forward_hi_ms: float | None = None
    backward_ms: float | None = None
    backward_lo_ms: float | None = None
    backward_hi_ms: float | None = None
    l2: str | None = None
    parity_max_abs: float | None = None
    parity_max_rel: float | None = None
    parity_rel_l2: float | None = None  # the judged error: ||out - ref|| / ||ref|| (fsrt.accuracy)
    parity_expected: float | None = None  # the relative L2 error the precision's rounding gives this model
    floor_compulsory_ms: float | None = None
    floor_layer_ms: float | None = None
    created: float | None = None
    # set by the store when read back
    id: int | None = None
    machine_id: str | None = None
    key: str | None = None

    def replace(self, **changes) -> Point:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_row(cls, row: dict) -> Point:
        """A point from a store row or a dict (unknown keys, such as retired columns, are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in known})

    def to_dict(self) -> dict:
        """Every field as a dict (JSON and CSV)."""
        return dataclasses.asdict(self)

    @property
    def measured(self) -> bool:
        """Whether the figure counts: measured (ok or unstable) with a positive latency."""
        return self.status in MEASURED and _positive(self.latency_ms)

    @property
    def ci_rel(self) -> float | None:
        """Half-width of the confidence interval relative to the figure (the larger side)."""
        if not (self.measured and _positive(self.latency_lo_ms) and _positive(self.latency_hi_ms)):
            return None
        return max(self.latency_hi_ms / self.latency_ms - 1.0, 1.0 - self.latency_lo_ms / self.latency_ms)

    @property
    def measurement_id(self) -> str:
        """What identifies the physical measurement (the ``mkey``, or the point key for old points)."""
        return self.mkey or self.key or str(self.id)


POINT_FIELDS = tuple(f.name for f in fields(Point) if f.name not in ("id", "machine_id", "key"))


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0
