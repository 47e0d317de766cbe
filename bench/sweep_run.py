"""The benchmark sweep: plan the measurements, prepare them, time them in interleaved rounds, store.

Order of work, and why:
1. Points already stored under the same identity are reused (resume); a measurement listed
   under several strategies (the unscaled base model) is measured once.
2. The machine-wide measurement lock is taken (``fsrt.bench.lock``): nothing else of fsrt times
   anything while this sweep does.
3. Each variant's files (weights, inputs, float64 references, ONNX graphs) are prepared once.
4. Every job is prepared in its runtime's worker process and checked: the outputs of the very
   call that will be timed are compared with the float64 reference (a train point: its first
   training step's loss, gradient norm and update against a float64 step); failures are stored now.
5. The checked jobs are timed in interleaved rounds (``fsrt.bench.rounds``); every window is
   stored as it is measured, so an interrupted sweep resumes mid-measurement.
6. Each job's figure, interval and pooled statistics become its point(s).
Jobs are taken in groups that fit in memory (every job of a group stays prepared through its
rounds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsrt.bench.artifacts import VariantArtifacts
from fsrt.bench.ceilings import Ceilings, measure_ceilings, roofline_floors
from fsrt.bench.host import HostConfig, Prepared, PrepareRequest
from fsrt.bench.lock import measurement_lock
from fsrt.bench.plan import BenchPlan, Job, Variant, measurement_key, point_key
from fsrt.bench.points import DONE, STATISTIC, Point, Status
from fsrt.bench.rounds import JobState, Window, run_rounds
from fsrt.bench.stats import LatencyStats
from fsrt.bench.step_parts import StepParts
from fsrt.bench.store import Store
from fsrt.bench.train_step import (
    PART_NAMES,
    step_error,
    step_identity,
    train_bound,
    train_files,
    train_unavailable_reason,
)
from fsrt.bench.worker import WorkerDied, WorkerFailed, WorkerPool
from fsrt.complexity import layer_count


class SweepProgress:
    """What a sweep reports while it runs (the CLI draws it; the default says nothing)."""

    def phase(self, name: str, total: int) -> None:
        """A new phase starts with ``total`` steps."""

    def step(self, label: str) -> None:
        """One step of the current phase is done."""

    def point(self, point: Point) -> None:
        """A point is final (measured, failed or reused)."""

    def waiting(self, holder: str) -> None:
        """Another measurement holds the machine's lock."""


@dataclass
class _Entry:
    """One measurement and the (variant, point key) labels it is reported under."""

    job: Job
    labels: list[tuple[Variant, str]]


def plan_jobs(plan: BenchPlan, variants: list[Variant], runtimes: list[str]) -> list[_Entry]:
    """Every distinct measurement of the plan, in plan order, with the labels it is stored under.
    Train mode measures only the runtimes that can train (``fsrt.bench.train_step``)."""
    entries: dict[str, _Entry] = {}
    for mode in plan.modes:
        step = step_identity() if mode == "train" else None
        mode_runtimes = [r for r in runtimes if mode != "train" or train_unavailable_reason(r) is None]
        for v in variants:
            for batch in plan.batches_for(mode):
                for precision in plan.precisions_for(mode):
                    for runtime in mode_runtimes:
                        if not plan.measures(v, runtime, precision, mode):
                            continue
                        mkey = measurement_key(v, runtime, precision, batch, plan, mode, step)
                        entry = entries.setdefault(mkey, _Entry(Job(v, runtime, precision, batch, mkey, mode), []))
                        entry.labels.append((v, point_key(v, mkey)))
    return list(entries.values())


def get_ceilings(store: Store, machine_id: str, device: str, precision: str, threads: int) -> Ceilings:
    """Stored ceilings for this machine, measured once when missing."""
    row = store.ceiling(machine_id, device, precision, threads)
    if row is None:
        c = measure_ceilings(device, precision)
        store.put_ceiling(machine_id, device, precision, threads, c.peak_flops, c.copy_bytes_per_s)
        return c
    return Ceilings(row["peak_flops"], row["copy_bytes_per_s"])


def base_point(job: Job, plan: BenchPlan, ceilings: Ceilings | None) -> Point:
    """The identity and complexity part of a job's point (before it is measured)."""
    v, cx = job.variant, job.variant.cx
    floors = (None, None)
    if ceilings is not None and job.mode == "infer":  # the floors count one forward pass
        floors = roofline_floors(cx.flops, cx.params, cx.acts, job.batch, 3 * v.spec.resolution**2,
                                 v.spec.num_classes, job.precision, ceilings)
    st = v.strategy
    return Point(model=v.name, base=v.base, family=v.spec.family, strategy=st.name, alpha=st.alpha, e_d=st.e_d,
                 e_w=st.e_w, e_r=st.e_r, s=v.s, flops_mult=v.flops_mult, runtime=job.runtime, mode=job.mode,
                 precision=job.precision, batch=job.batch, resolution=v.spec.resolution, device=plan.device,
                 threads=plan.threads, flops=cx.flops, params=cx.params, acts=cx.acts,
                 layers=layer_count(v.spec), mkey=job.mkey,
                 l2=plan.window.l2 if plan.device.startswith("cuda") else "n/a (CPU)",
                 floor_compulsory_ms=floors[0], floor_layer_ms=floors[1])


def measured_point(base: Point, state: JobState, prepared: Prepared, plan: BenchPlan) -> Point:
    """A job's point from its windows: the figure, its interval and pooled statistics."""
    if state.error:
        return base.replace(status=Status.ERROR, reason=state.error, note=prepared.note)
    kept = state.kept
    pooled = LatencyStats.of([t for w in kept for t in w.times_ms])
    ci = state.interval(plan.rounds.confidence)
    status = Status.OK if state.converged(plan.rounds) else Status.UNSTABLE
    return base.replace(status=status, note=prepared.note, latency_ms=state.figure(),
                        latency_lo_ms=ci[0] if ci else None, latency_hi_ms=ci[1] if ci else None,
                        statistic=STATISTIC, rounds=len(kept), dropped_rounds=state.dropped,
                        median_ms=pooled.median_ms, p90_ms=pooled.p90_ms, p99_ms=pooled.p99_ms,
                        mean_ms=pooled.mean_ms, min_ms=pooled.min_ms, cv=pooled.cv, n=pooled.n,
                        peak_mem_bytes=prepared.peak_mem_bytes, mem_kind=prepared.mem_kind)


def estimated_bytes(job: Job) -> int:
    """A generous estimate of one prepared job's resident memory: weights held about three times
    (module, runtime copy, packed form), fp32 activations of a batch twice, and a fixed overhead.
    A training step also holds gradients and momentum, and keeps every layer's activations (conv,
    BatchNorm and activation outputs) for the backward pass."""
    cx = job.variant.cx
    if job.mode == "train":
        return 20 * cx.params + 16 * cx.acts * job.batch + 64 * 2**20
    return 12 * cx.params + 8 * cx.acts * job.batch + 64 * 2**20


def memory_groups(jobs: list[Job], budget_bytes: int) -> list[list[Job]]:
    """Consecutive groups of jobs whose estimated memory fits ``budget_bytes`` (at least one each)."""
    groups, cur, used = [], [], 0
    for job in jobs:
        need = estimated_bytes(job)
        if cur and used + need > budget_bytes:
            groups.append(cur)
            cur, used = [], 0
        cur.append(job)
        used += need
    if cur:
        groups.append(cur)
    return groups


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


class Sweep:
    """One sweep's measurements against a store (see the module docstring)."""

    def __init__(self, plan: BenchPlan, store: Store, run_id: int, machine_id: str, workdir: Path,
                 progress: SweepProgress | None = None, make_pool: Callable | None = None):
        self.plan, self.store, self.run_id, self.machine_id, self.workdir = plan, store, run_id, machine_id, workdir
        self.progress = progress or SweepProgress()
        self.make_pool = make_pool or (lambda cfg: WorkerPool(cfg, workdir / "logs"))
        self.points: list[Point] = []

    def _finish(self, entry: _Entry, point: Point) -> None:
        for v, key in entry.labels:
            labelled = point.replace(model=v.name, strategy=v.strategy.name, alpha=v.strategy.alpha,
                                     e_d=v.strategy.e_d, e_w=v.strategy.e_w, e_r=v.strategy.e_r, s=v.s,
                                     flops_mult=v.flops_mult, created=None)
            self.store.put_point(self.run_id, self.machine_id, key, labelled)
            stored = self.store.find_point(self.machine_id, key)
            self.points.append(stored)
            self.progress.point(stored)

    def reuse(self, entries: list[_Entry]) -> list[_Entry]:
        """Link stored points; returns the entries that still need measuring."""
        todo = []
        for entry in entries:
            stored = {key: self.store.find_point(self.machine_id, key) for _, key in entry.labels}
            done = {k: p for k, p in stored.items() if p is not None and p.status in DONE}
            if len(done) == len(entry.labels):
                for p in done.values():
                    self.store.link_point(self.run_id, p.id)
                    self.points.append(p)
                    self.progress.point(p)
            elif done:  # measured under another label: list it under the missing ones too
                self._finish(entry, next(iter(done.values())))
            else:
                todo.append(entry)
        return todo

    def run(self, entries: list[_Entry]) -> list[Point]:
        """Measure what is missing and return every point of the run (stored and new)."""
        todo = self.reuse(entries)
        if todo:
            with measurement_lock(on_wait=self.progress.waiting):
                self._measure(todo)
        return self.points

    def _measure(self, todo: list[_Entry]) -> None:
        ceilings = {p: get_ceilings(self.store, self.machine_id, self.plan.device, p, self.plan.threads)
                    for p in dict.fromkeys(e.job.precision for e in todo)}
        files = self._prepare_files(todo)
        by_mkey = {e.job.mkey: e for e in todo}
        budget = int(0.4 * _available_bytes())
        for group in memory_groups([e.job for e in todo], budget):
            self._measure_group([by_mkey[j.mkey] for j in group], files, ceilings)

    def _prepare_files(self, todo: list[_Entry]) -> dict[str, object]:
        """Each variant's files, prepared once (exports take seconds each, so they show progress)."""
        from fsrt.bench.runners import all_runners

        classes = all_runners()
        needs: dict[str, tuple[VariantArtifacts, set, set, set]] = {}
        primer = primer_variant(todo[0].job.variant)
        for e in todo:
            job = e.job
            for v, batch in ((job.variant, job.batch), (primer, 1)):
                art = VariantArtifacts(v, self.plan.seed, self.workdir, self.plan.device)  # references run there
                art, batches, graphs, checks, train = needs.setdefault(v.artifact_id, (art, set(), set(), set(), set()))
                batches.add(batch)
                if v is job.variant and job.mode == "train":
                    train.add(batch)
                    continue
                if getattr(classes.get(job.runtime), "needs_onnx", False):
                    graphs.add((_graph_precision(job), batch))
                if v is job.variant:
                    checks.add((job.precision, batch))
        self.progress.phase("preparing models", len(needs))
        out = {}
        for vid, (art, batches, graphs, checks, train) in needs.items():
            files = art.files(sorted(batches), sorted(graphs), sorted(checks))
            if train:
                labels, refs = train_files(art, sorted(train))
                files = dataclasses.replace(files, labels=labels, train_references=refs)
            out[vid] = files
            art.release()
            self.progress.step(art.v.name)
        out["primer"] = out[primer.artifact_id]
        self._primer = primer
        if self.plan.device.startswith("cuda"):  # the workers need the GPU memory the references held
            import torch

            torch.cuda.empty_cache()
        return out

    def _host_config(self, runtime: str) -> HostConfig:
        p = self.plan
        return HostConfig(runtime, p.device, p.threads, p.window, p.channels_last, p.cuda_graphs, str(self.workdir))

    def _measure_group(self, group: list[_Entry], files: dict, ceilings: dict) -> None:
        pool = self.make_pool(self._host_config)
        try:
            prepared = self._prepare_jobs(pool, group, files, ceilings)
            self._time_jobs(pool, prepared, ceilings)
        except BaseException:
            pool.close(kill=True)
            raise
        pool.close()

    def _prime(self, pool, files, job: Job) -> None:
        """Prepare and free a tiny model in a fresh worker before anything is measured there: a
        runtime's one-time set-up (libraries, thread pools, kernel caches) must not count as the
        first model's memory. Tiny, so the memory it frees (and later models reuse) is negligible."""
        f = files["primer"]
        req = PrepareRequest("primer", self._primer.spec.to_dict(), str(f.weights), str(f.inputs[1]),
                             {p: str(path) for (p, b), path in f.onnx.items() if b == 1}, job.precision, 1)
        try:
            pool.prepare(job.runtime, req)
            pool.release(job.runtime, "primer")
        except (WorkerFailed, WorkerDied):
            pass  # the real prepare reports the problem

    def _prepare_jobs(self, pool, group: list[_Entry], files: dict, ceilings: dict) -> dict[str, tuple]:
        """Prepare and parity-check each job in its worker; failures become points now."""
        self.progress.phase("preparing runtimes and checking outputs", len(group))
        ready, primed = {}, set()
        for entry in group:
            job = entry.job
            base = base_point(job, self.plan, ceilings[job.precision])
            f = files[job.variant.artifact_id]
            train = job.mode == "train"
            labels = str(f.labels[job.batch]) if train else None
            req = PrepareRequest(job.mkey, job.variant.spec.to_dict(), str(f.weights), str(f.inputs[job.batch]),
                                 {p: str(path) for (p, b), path in f.onnx.items() if b == job.batch},
                                 job.precision, job.batch, job.mode, labels)
            if job.runtime not in primed:
                primed.add(job.runtime)
                self._prime(pool, files, job)
            self.progress.step(job.label)
            try:
                prep = pool.prepare(job.runtime, req)
                if train:
                    base, verdict = _train_checked(base, prep.output, np.load(f.train_references[job.batch]))
                else:
                    base, verdict = checked(base, prep.output, np.load(f.references[job.batch]),
                                            f.expected[(job.precision, job.batch)])
            except (WorkerFailed, WorkerDied, ValueError, RuntimeError) as e:
                self._finish(entry, base.replace(status=Status.ERROR, reason=str(e)))
                continue
            if not verdict.passed:
                self._finish(entry, base.replace(status=Status.PARITY_FAILED, note=prep.note, reason=verdict.reason))
                try:
                    pool.release(job.runtime, job.mkey)
                except (WorkerFailed, WorkerDied):
                    pass
                continue
            ready[job.mkey] = (entry, base, prep)
        return ready

    def _time_jobs(self, pool, ready: dict[str, tuple], ceilings: dict) -> None:
        """Interleaved rounds over the checked jobs; each window stored as it is measured."""
        if not ready:
            return
        prior = self.store.windows(self.machine_id, list(ready))
        cfg = self.plan.rounds
        self.progress.phase("timing in interleaved rounds", len(ready))
        finished: set[str] = set()
        split = {m: PART_NAMES for m, (e, _, _) in ready.items() if e.job.mode == "train"}
        parts, last = StepParts(self.store, self.machine_id, split), {}

        def execute(mkey: str) -> list[float]:
            times = pool.window(ready[mkey][0].job.runtime, mkey)
            if mkey in split:
                last[mkey] = pool.parts(ready[mkey][0].job.runtime, mkey)
            return times

        def on_window(mkey: str, window: Window, state: JobState) -> None:
            self.store.put_windows(self.machine_id, mkey, state.windows)
            parts.add(mkey, window, last.pop(mkey, {}), state)
            if mkey not in finished and state.done(cfg):
                finished.add(mkey)
                self.progress.step(ready[mkey][0].job.label)

        states = run_rounds(list(ready), execute, cfg, prior, on_window)
        for mkey in ready.keys() - finished:  # ended by --max-rounds or the budget, unsettled
            self.progress.step(ready[mkey][0].job.label)
        for mkey, (entry, base, prep) in ready.items():
            point = measured_point(base, states[mkey], prep, self.plan)
            if point.status != Status.ERROR:
                point = point.replace(**parts.fields(mkey, states[mkey], cfg.confidence))
            self._finish(entry, point)
            try:
                pool.release(entry.job.runtime, mkey)
            except (WorkerFailed, WorkerDied):
                pass  # nothing left to free


def checked(base: Point, output: np.ndarray, ref: np.ndarray, expected: float | None):
    """``(point with its accuracy figures, verdict)``: the timed call's outputs judged against the
    float64 reference by ``fsrt.accuracy``'s rule (``expected``: the error the precision's
    rounding gives this model). A shape mismatch raises ``ValueError``."""
    from fsrt.accuracy import compare, judge
    from fsrt.precision import get_precision

    errors = compare(output, ref)
    verdict = judge(errors.rel_l2, get_precision(base.precision), expected)
    return base.replace(parity_max_abs=errors.max_abs, parity_max_rel=errors.max_rel, parity_rel_l2=errors.rel_l2,
                        parity_expected=expected), verdict


def _train_checked(base: Point, output: np.ndarray, ref: np.ndarray):
    """``(point with its accuracy figures, verdict)`` for a training step: its loss, gradient norm and
    update norm against the float64 step (``fsrt.bench.train_step``'s bound for the precision).
    A shape mismatch raises ``RuntimeError``."""
    from fsrt.accuracy import Judgement

    err_abs, err_rel, what = step_error(output, ref)
    bound = train_bound(base.precision, ref)
    reason = None if err_rel <= bound else (f"training step's {what} against the float64 step: relative error "
                                            f"{err_rel:.2e} > {bound:.0e} bound")
    return base.replace(parity_max_abs=err_abs, parity_max_rel=err_rel), Judgement(err_rel <= bound, 0.0, bound,
                                                                                    reason)


def primer_variant(v: Variant) -> Variant:
    """A tiny relative of ``v`` (1/8 of its widths at 32 px) that primes a runtime's worker."""
    from fsrt.complexity import complexity
    from fsrt.scaling import parse_strategy, scale_spec

    spec = scale_spec(v.spec.replace(resolution=32), parse_strategy("w"), 1 / 64).spec.replace(name="primer")
    return Variant("primer", "primer", parse_strategy("w"), 1 / 64, 1 / 64, spec, complexity(spec))


def _graph_precision(job: Job) -> str:
    """The ONNX precision a runtime reads: OpenVINO applies its precision to an fp32 graph."""
    return "fp32" if job.runtime == "openvino" else job.precision


def run_sweep(plan: BenchPlan, variants: list[Variant], runtimes: list[str], store: Store, run_id: int,
              machine_id: str, workdir: Path, progress: SweepProgress | None = None,
              make_pool: Callable | None = None) -> list[Point]:
    """Measure every missing point of ``variants`` on ``runtimes`` (names); reuse stored ones.

    Returns the run's points. Interrupting loses at most the window in flight.
    """
    entries = plan_jobs(plan, variants, runtimes)
    return Sweep(plan, store, run_id, machine_id, workdir, progress, make_pool).run(entries)
