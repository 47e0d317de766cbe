"""Parts of a timed call, measured in the same windows as the call: a training step's forward
(with the loss) and its backward (with the optimizer step).

Each timed call of a train point records when its forward ended (``fsrt.bench.train_step``), so
every window of the step yields a window of each part, from the very same calls. A part's windows
are stored in the results store like any measurement's, under the derived key ``<mkey>/<part>``:
an interrupted sweep resumes them, and a part's figure and 95% interval are computed exactly as
the step's (the interquartile mean of the kept windows' calls, jackknife interval). A step window
dropped as an outlier drops its parts' windows of the same round too, so the parts always
describe the step's kept rounds. (The parts' figures need not add up to the step's: each trims
its own tails.)
"""

from __future__ import annotations

from fsrt.bench.rounds import JobState, Window
from fsrt.bench.store import Store


def part_key(mkey: str, part: str) -> str:
    """The measurement key under which a part's windows are stored."""
    return f"{mkey}/{part}"


class StepParts:
    """The part windows of a sweep's split measurements (by measurement key and part name)."""

    def __init__(self, store: Store, machine_id: str, parts: dict[str, tuple[str, ...]]):
        """``parts``: mkey -> the part names its runner reports (only split measurements)."""
        self.store, self.machine_id, self.parts = store, machine_id, parts
        keys = [part_key(m, p) for m, names in parts.items() for p in names]
        stored = store.windows(machine_id, keys) if keys else {}
        self.windows = {m: {p: stored.get(part_key(m, p), []) for p in names} for m, names in parts.items()}

    def add(self, mkey: str, window: Window, times: dict[str, list[float]], state: JobState) -> None:
        """Record one step window's parts and store them with the step's current outlier flags."""
        if mkey not in self.windows:
            return
        for part, wins in self.windows[mkey].items():
            if times.get(part):
                wins.append(Window(window.round, tuple(times[part]), window.started))
        self._follow(mkey, state)
        for part, wins in self.windows[mkey].items():
            self.store.put_windows(self.machine_id, part_key(mkey, part), wins)

    def _follow(self, mkey: str, state: JobState) -> None:
        """Mirror the step's outlier flags round by round (a part without its step window does not count)."""
        dropped = {w.round: w.dropped for w in state.windows}
        for wins in self.windows[mkey].values():
            for w in wins:
                w.dropped = dropped.get(w.round, True)

    def fields(self, mkey: str, state: JobState, confidence: float) -> dict:
        """Point fields ``<part>_ms``, ``<part>_lo_ms``, ``<part>_hi_ms`` of a measurement whose step
        ended in ``state``."""
        if mkey not in self.windows:
            return {}
        self._follow(mkey, state)
        out = {}
        for part, wins in self.windows[mkey].items():
            st = JobState(part_key(mkey, part), wins)
            ci = st.interval(confidence)
            out.update({f"{part}_ms": st.figure(), f"{part}_lo_ms": ci[0] if ci else None,
                        f"{part}_hi_ms": ci[1] if ci else None})
        return out
