"""A one-point sweep with every runtime's host in this process (fake or instrumented runners)."""

from __future__ import annotations


def sweep_in_process(tmp_path, runtimes, max_rounds: int, make_runner=None, make_train_runner=None, read=None,
                     **plan_fields):
    """Sweep RegNetX-200MF (w, s=1, 32 px, no warm-up, instant windows) on ``runtimes`` through an
    ``InProcessPool`` built with the given runner factories; ``plan_fields`` override the plan.
    Returns the points, or ``read(store, points)`` (read before the store closes)."""
    from fsrt.bench.plan import BenchPlan, plan_variants
    from fsrt.bench.rounds import RoundConfig
    from fsrt.bench.store import Store
    from fsrt.bench.sweep_run import run_sweep
    from fsrt.bench.timing import WindowConfig
    from fsrt.bench.worker import InProcessPool
    from fsrt.scaling import parse_strategy

    plan = BenchPlan(sources=("RegNetX-200MF",), strategies=(parse_strategy("w"),), s_values=(1.0,),
                     resolution=32, window=WindowConfig(warmup_s=0.0, min_warmup=1, window_s=0.0),
                     rounds=RoundConfig(cooldown_s=0.0, max_rounds=max_rounds), **plan_fields)
    store = Store(tmp_path / "fsrt.db")
    store.add_machine("m", {})
    run = store.start_run("t", "m", {})

    def pool(cfg):
        return InProcessPool(cfg, make_runner=make_runner, make_train_runner=make_train_runner)

    import fsrt.bench.sweep_run as sr

    real = sr.get_ceilings
    sr.get_ceilings = lambda *a: None  # no ceilings needed for these checks
    try:
        points = run_sweep(plan, plan_variants(plan), list(runtimes), store, run, "m", tmp_path / "w",
                           make_pool=pool)
        return read(store, points) if read else points
    finally:
        sr.get_ceilings = real
        store.close()
