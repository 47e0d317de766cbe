"""Fault-injection benchmark: random faults against fsrt bench, train and export.

Each trial runs one command in a fresh folder and injects one fault:

- ``sigint`` / ``sigterm``: the signal at a random moment of the run;
- ``enospc``: the run's folder is a small tmpfs of random size (in a private user and mount
  namespace, so no privileges are needed), so the disk fills up at a random write; where
  namespaces are unavailable, ``enospc-hook`` injects ENOSPC at a random fsync and SQLite's
  own SQLITE_FULL at a random page instead;
- ``lock`` (bench only): another process holds the results database's write lock for a random
  time, sometimes longer than fsrt waits.

A run passes when it ends cleanly (exit 0) or with exactly one ``error:`` line as its last
stderr line, no traceback, and the exit code the fault calls for (130 Ctrl-C, 143 SIGTERM, 2
otherwise); when it leaves no temp files and no half-written or corrupt output (every file
that exists loads: SQLite integrity, checkpoints, JSON, ONNX; a bench database keeps the run
stored before the fault); and when the same command, run again without the fault (``--resume``
for train), then succeeds. The summary counts failures by kind; the goal is zero.

Signals and locks land at a uniformly random moment of a clean run of the same command, timed
once at the start (``--quick``: fixed guesses instead). Ctrl-C goes to the whole process group,
as a terminal sends it (bench's runtime workers included); SIGTERM to fsrt's process only, as
``kill PID`` sends it.

    python dev/fault_injection.py --n 30                     # all commands and faults
    python dev/fault_injection.py --n 4 --commands bench --faults sigint,lock --json > out.json
    python dev/fault_injection.py --quick                    # one Ctrl-C into fsrt export (smoke test)
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FSRT = [sys.executable, "-c", "from fsrt.cli import main; main()"]
FAULTS = {"bench": ("sigint", "sigterm", "enospc", "lock"), "train": ("sigint", "sigterm", "enospc"),
          "export": ("sigint", "sigterm", "enospc")}
TYPICAL_S = {"bench": 12.0, "train": 40.0, "export": 15.0}  # guessed run times (--quick); else timed
TMPFS_BYTES = {"bench": (16 << 10, 400 << 10), "train": (4 << 10, 60 << 20), "export": (4 << 10, 12 << 20)}
TEMP_SUFFIXES = (".tmp", ".partial", ".creating")


@dataclass
class Trial:
    """One injected fault and what came of it."""

    index: int
    command: str
    fault: str
    seed: int
    detail: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    landed: bool = True  # False when the run ended before the fault could happen
    problems: list[str] = field(default_factory=list)
    last_line: str = ""
    stderr_tail: str = ""  # kept for failed runs, to see what went wrong

    @property
    def ok(self) -> bool:
        return not self.problems


# -- the commands ----------------------------------------------------------------------------------
def command_args(command: str, work: Path, rerun: bool = False) -> list[str]:
    """The fsrt arguments of a trial's command, all outputs inside ``work``."""
    if command == "bench":
        return ["bench", "RegNetX-200MF", "--resolution", "32", "--sweep", "s=1", "--strategy", "w",
                "--runtimes", "eager", "--precision", "fp32", "--measure-s", "0.05", "--warmup-s", "0.02",
                "--threads", "1",
                "--db", str(work / "fsrt.db"), "--out", str(work / "run")]
    if command == "train":
        resume = ["--resume"] if rerun and (work / "out" / "last.pt").exists() else []
        return ["train", "RegNetX-200MF", "--data", "digits", "--epochs", "1", "-r", "32", "--no-progress",
                "--out", str(work / "out"), *resume]
    return ["export", "RegNetX-200MF", "-r", "32", "-o", str(work / "m.onnx"), *(["--force"] if rerun else [])]


def prepare(command: str, work: Path) -> None:
    """Existing data a fault must not damage: for bench, a database holding an earlier run."""
    if command != "bench":
        return
    from fsrt.bench.points import Point
    from fsrt.bench.store import Store

    with Store(work / "fsrt.db") as st:
        st.add_machine("earlier", {"cpu": "earlier machine"})
        run = st.start_run("earlier", "earlier", {"note": "stored before the fault"})
        st.put_point(run, "earlier", "earlier-point", Point(model="m", strategy="w", s=1.0, runtime="eager",
                                                            mode="infer", precision="fp32", batch=1, flops=1,
                                                            params=1, acts=1, status="ok", latency_ms=1.0,
                                                            mkey="earlier-point"))
        st.finish_run(run)


# -- checking what a run left behind ---------------------------------------------------------------
def temp_leftovers(work: Path) -> list[str]:
    """Hidden temp files or staging folders left anywhere under ``work``."""
    return sorted(str(p.relative_to(work)) for p in work.rglob(".*") if p.name.endswith(TEMP_SUFFIXES))


def check_bench(work: Path, finished: bool) -> list[str]:
    problems = []
    db = work / "fsrt.db"
    if not db.exists():
        return ["the run stored before the fault was lost (no database)"]
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        earlier = con.execute("SELECT COUNT(*) FROM run_points rp JOIN runs r ON r.id = rp.run_id "
                              "WHERE r.name='earlier'").fetchone()[0]
        con.close()
        if integrity != "ok":
            problems.append(f"database integrity: {integrity}")
        if earlier != 1:
            problems.append("the run stored before the fault was lost")
    except sqlite3.Error as e:
        problems.append(f"database unreadable: {e}")
    report = work / "run" / "report"
    if report.exists():
        problems += _check_json(report / "summary.json", "report summary.json")
        if not (report / "report.html").is_file():
            problems.append("half-written report folder (no report.html)")
    elif finished:
        problems.append("finished without a report")
    return problems


def check_train(work: Path, finished: bool) -> list[str]:
    problems = []
    out = work / "out"
    for pt in sorted(out.glob("*.pt")) if out.exists() else []:
        try:
            import torch

            ckpt = torch.load(pt, map_location="cpu", weights_only=True)
            if "spec" not in ckpt or "model" not in ckpt:
                problems.append(f"{pt.name} lacks spec or weights")
        except Exception as e:  # any failure to load is corrupt data
            problems.append(f"{pt.name} does not load: {type(e).__name__}")
    log = out / "log.jsonl"
    if log.exists():
        for i, line in enumerate(log.read_text().splitlines()):
            try:
                json.loads(line, parse_constant=_no_constants)
            except ValueError:
                problems.append(f"log.jsonl line {i + 1} is not valid JSON")
    if (out / "summary.json").exists():
        problems += _check_json(out / "summary.json", "summary.json")
    elif finished:
        problems.append("finished without summary.json")
    if finished and not (out / "last.pt").exists():
        problems.append("finished without last.pt")
    return problems


def check_export(work: Path, finished: bool) -> list[str]:
    path = work / "m.onnx"
    if not path.exists():
        return ["finished without the ONNX file"] if finished else []
    try:
        from fsrt.exporters.onnx_export import read_metadata

        read_metadata(path)
        import onnx

        onnx.checker.check_model(str(path))
    except Exception as e:  # any failure to load is corrupt data
        return [f"m.onnx is corrupt: {type(e).__name__}: {str(e)[:100]}"]
    return []


CHECKS = {"bench": check_bench, "train": check_train, "export": check_export}


def _no_constants(name: str):
    raise ValueError(f"bare {name} is not JSON")


def _check_json(path: Path, what: str) -> list[str]:
    try:
        json.loads(path.read_text(), parse_constant=_no_constants)
    except (OSError, ValueError) as e:
        return [f"{what} is not valid JSON ({type(e).__name__})"]
    return []


def judge_output(trial: Trial, code: int, err: str, expected: tuple[int, ...]) -> None:
    """Exit code and stderr: a clean exit, or one last ``error:`` line and no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    trial.last_line = lines[-1][:160] if lines else ""
    if "Traceback (most recent call last)" in err:
        trial.problems.append("traceback")
    if "after the signal (killed)" in err:
        trial.problems.append("did not stop after the signal")
    if code == 0:
        return
    if code not in expected:
        trial.problems.append(f"exit code {code}, expected {' or '.join(map(str, expected))}")
    if code < 0:  # killed by the signal's default action: nothing could be printed
        return
    if not lines or not lines[-1].startswith("error: ") or sum(ln.startswith("error:") for ln in lines) != 1:
        trial.problems.append("error output is not one final 'error:' line")
    if trial.problems:
        trial.stderr_tail = err[-2000:]


# -- one trial -------------------------------------------------------------------------------------
def run_trial(trial: Trial, work: Path, fsrt_prefix: list[str] | None = None,
              typical_s: dict[str, float] | None = None) -> None:
    """Inject ``trial.fault`` into ``trial.command`` run in ``work``, check, rerun, check; signals and
    locks come within ``typical_s[command]`` seconds (a clean run's time)."""
    typical = {**TYPICAL_S, **(typical_s or {})}
    rng = random.Random(trial.seed)
    prepare(trial.command, work)
    args = command_args(trial.command, work)
    start = time.monotonic()
    if trial.fault in ("sigint", "sigterm"):
        delay = rng.uniform(0.5, typical[trial.command])
        trial.detail = f"signal after {delay:.1f}s"
        sig = signal.SIGINT if trial.fault == "sigint" else signal.SIGTERM
        code, err, trial.landed, after_s = _run_and_signal(args, delay, sig)
        # 128 + signal from fsrt's handler; or killed by the signal itself (the shell shows the same code),
        # which happens only before fsrt installed its handler or after the work was done
        expected = (128 + sig, -sig)
        if trial.landed and code == 0 and after_s > IGNORED_AFTER_S:  # a signal at the very end may go unseen
            trial.problems.append(f"ignored the signal (worked on {after_s:.0f}s after it, then exit 0)")
    elif trial.fault == "lock":
        delay, hold = rng.uniform(0.0, typical["bench"]), rng.choice([rng.uniform(1.0, 10.0), 40.0])
        trial.detail = f"lock after {delay:.1f}s for {hold:.1f}s"
        code, err, trial.landed = _run_with_lock(args, work / "fsrt.db", delay, hold)
        expected = (2,)
    else:  # enospc-hook: the prefix injects ENOSPC
        code, err = _run(fsrt_prefix + args)
        expected = (2,)
    trial.seconds = time.monotonic() - start
    trial.exit_code = code
    judge_output(trial, code, err, expected)
    trial.problems += [f"after the fault: {p}" for p in CHECKS[trial.command](work, finished=code == 0)]
    trial.problems += [f"temp file left: {p}" for p in temp_leftovers(work)]


def rerun_and_check(trial: Trial, work: Path) -> None:
    """The same command without the fault must now succeed and leave whole outputs."""
    code, err = _run(FSRT + command_args(trial.command, work, rerun=True))
    if code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        trial.problems.append(f"rerun failed ({code}): {lines[-1][:160] if lines else ''}")
        return
    trial.problems += [f"after the rerun: {p}" for p in CHECKS[trial.command](work, finished=True)]
    trial.problems += [f"temp file left after the rerun: {p}" for p in temp_leftovers(work)]


def _run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    return proc.returncode, proc.stderr


STOP_WITHIN_S = 120.0  # a signalled run must end within this (cleanup included)
IGNORED_AFTER_S = 10.0  # a run that exits 0 this long after its signal ignored it (not just finishing)


def _run_and_signal(args: list[str], delay: float, sig: int) -> tuple[int, str, bool, float]:
    """Exit code, stderr, whether the signal was sent before the run ended, and seconds from the
    signal to the end of the run. SIGINT goes to the run's process group (a terminal's Ctrl-C),
    any other signal to its process."""
    proc = subprocess.Popen(FSRT + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        landed = False
    except subprocess.TimeoutExpired:
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        landed = True
    sent = time.monotonic()
    try:
        _, err = proc.communicate(timeout=STOP_WITHIN_S if landed else 1800)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        err += f"\nstill running {STOP_WITHIN_S:.0f}s after the signal (killed)\n"
    return proc.returncode, err, landed, time.monotonic() - sent


def _run_with_lock(args: list[str], db: Path, delay: float, hold: float) -> tuple[int, str, bool]:
    """Run bench; after ``delay`` s another process takes the database's exclusive lock for ``hold`` s."""
    proc = subprocess.Popen(FSRT + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=delay)
        _, err = proc.communicate()
        return proc.returncode, err, False
    except subprocess.TimeoutExpired:
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"con = sqlite3.connect({str(db)!r}, timeout=60, isolation_level=None)\ncon.execute('BEGIN EXCLUSIVE')\n"
         f"print('locked', flush=True)\ntime.sleep({hold})\ncon.rollback()\n"], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        _, err = proc.communicate(timeout=1800)
        return proc.returncode, err, True
    finally:
        holder.kill()
        holder.wait()


# -- ENOSPC: a small tmpfs in a private namespace, or injected by hooks ----------------------------
def namespaces_available() -> bool:
    """True when ``unshare`` can give this user a private mount namespace with a tmpfs."""
    if not shutil.which("unshare"):
        return False
    with tempfile.TemporaryDirectory() as d:
        probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                                f"mount -t tmpfs -o size=64k tmpfs {d} && touch {d}/x"], capture_output=True)
    return probe.returncode == 0


def run_enospc_in_tmpfs(trial: Trial, work: Path) -> None:
    """Run the trial inside a private namespace where ``work`` is a tmpfs of random size."""
    lo, hi = TMPFS_BYTES[trial.command]
    size = random.Random(trial.seed).randint(lo, hi)
    trial.detail = f"tmpfs of {size >> 10} KiB"
    inner = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, __file__,
                            "--inner", json.dumps({**asdict(trial), "work": str(work), "size": size})],
                           capture_output=True, text=True, timeout=3600)
    if inner.returncode != 0 or not inner.stdout.strip():
        trial.problems.append(f"inner driver failed: {inner.stderr.strip()[-300:]}")
        return
    done = json.loads(inner.stdout.strip().splitlines()[-1])
    for key in ("exit_code", "seconds", "problems", "last_line", "detail", "stderr_tail", "landed"):
        setattr(trial, key, done[key])


def inner_main(spec: dict) -> None:
    """Inside the namespace: mount the tmpfs, run the faulty command, check, grow the tmpfs so
    there is space again, rerun and check; print the trial as JSON."""
    work, size = Path(spec.pop("work")), spec.pop("size")
    trial = Trial(**{k: spec[k] for k in ("index", "command", "fault", "seed", "detail")})
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(work)], check=True)
    try:
        try:
            prepare(trial.command, work)
        except Exception as e:  # the tmpfs is too small even for the earlier run: no existing data this time
            trial.detail += f" (no earlier run: {type(e).__name__})"
            if any(work.iterdir()):
                trial.problems.append(f"a failed database creation left {sorted(p.name for p in work.iterdir())}")
        args = command_args(trial.command, work)
        start = time.monotonic()
        code, err = _run(FSRT + args)
        trial.seconds, trial.exit_code = time.monotonic() - start, code
        trial.landed = code != 0  # the disk filled up before the run ended (a big tmpfs may not)
        judge_output(trial, code, err, (2,))
        problems = CHECKS[trial.command](work, finished=code == 0)
        if "(no earlier run" in trial.detail:
            problems = [p for p in problems if "stored before the fault" not in p]
        trial.problems += [f"after the fault: {p}" for p in problems]
        trial.problems += [f"temp file left: {p}" for p in temp_leftovers(work)]
        subprocess.run(["mount", "-o", "remount,size=1g", str(work)], check=True)
        rerun_and_check(trial, work)
        if "(no earlier run" in trial.detail:
            trial.problems = [p for p in trial.problems if "stored before the fault" not in p]
    finally:
        subprocess.run(["umount", str(work)], check=False)
    print(json.dumps(asdict(trial)))


def hooked_fsrt(fsyncs: int, pages: int) -> list[str]:
    """A command prefix running fsrt with ENOSPC from fsync call ``fsyncs`` on and SQLite
    databases allowed to grow by ``pages`` pages only."""
    return [sys.executable, __file__, "--hooked", str(fsyncs), str(pages), "--"]


def hooked_main(fsyncs: int, pages: int, args: list[str]) -> None:
    calls = {"n": 0}
    real_fsync, real_connect = os.fsync, sqlite3.connect

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] >= fsyncs:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    def connect(*a, **k):
        con = real_connect(*a, **k)
        with_pages = con.execute("PRAGMA page_count").fetchone()[0] + pages
        con.execute(f"PRAGMA max_page_count = {max(1, with_pages)}")
        return con

    os.fsync, sqlite3.connect = fsync, connect
    from fsrt.cli import main

    main(args)


# -- the campaign ----------------------------------------------------------------------------------
def plan(n: int, seed: int, commands: list[str], faults: list[str]) -> list[Trial]:
    """``n`` trials cycling through the command/fault pairs asked for, each with its own seed."""
    pairs = [(c, f) for c in commands for f in FAULTS[c] if f in faults or (f == "enospc" and "enospc-hook" in faults)]
    if not pairs:
        raise SystemExit("no command takes any of these faults")
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return [Trial(i, *pairs[i % len(pairs)], seed=rng.randrange(2**31)) for i in range(n)]


def clean_run_seconds(commands: list[str]) -> dict[str, float]:
    """How long each command takes without a fault here and now (one run each, in a scratch folder)."""
    seconds = {}
    for command in commands:
        work = Path(tempfile.mkdtemp(prefix="fsrt-fault-clean-"))
        try:
            prepare(command, work)
            start = time.monotonic()
            code, err = _run(FSRT + command_args(command, work))
            if code != 0:
                raise SystemExit(f"a clean fsrt {command} failed ({code}): {err.strip()[-300:]}")
            seconds[command] = round(time.monotonic() - start, 1)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return seconds


def run_campaign(trials: list[Trial], use_tmpfs: bool, keep: bool, typical_s: dict[str, float] | None = None,
                 log=print) -> list[Trial]:
    for trial in trials:
        work = Path(tempfile.mkdtemp(prefix=f"fsrt-fault-{trial.index}-"))
        try:
            if trial.fault == "enospc" and use_tmpfs:
                run_enospc_in_tmpfs(trial, work)
            elif trial.fault == "enospc":
                rng = random.Random(trial.seed)
                fsyncs, pages = rng.randint(1, 6), rng.randint(0, 8)
                trial.fault, trial.detail = "enospc-hook", f"ENOSPC from fsync {fsyncs}, {pages} SQLite pages"
                run_trial(trial, work, fsrt_prefix=hooked_fsrt(fsyncs, pages), typical_s=typical_s)
                rerun_and_check(trial, work)
            else:
                run_trial(trial, work, typical_s=typical_s)
                rerun_and_check(trial, work)
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
        state = "ok" if trial.ok else "FAIL " + "; ".join(trial.problems)
        log(f"[{trial.index + 1}/{len(trials)}] {trial.command:6s} {trial.fault:11s} {trial.detail:32s} "
            f"exit {trial.exit_code}  {trial.seconds:5.1f}s  {state}")
    return trials


def summarize(trials: list[Trial]) -> dict:
    """Counts per command and fault, and of failures by kind (traceback, output, data, rerun)."""
    kinds = {"traceback": 0, "error output": 0, "exit code": 0, "signal ignored": 0, "lost or corrupt data": 0,
             "rerun failed": 0}
    for t in trials:
        text = " | ".join(t.problems)
        kinds["traceback"] += "traceback" in text
        kinds["error output"] += "error output" in text
        kinds["exit code"] += "exit code" in text
        kinds["signal ignored"] += "ignored the signal" in text
        kinds["lost or corrupt data"] += any(("after the" in p or "temp file" in p) for p in t.problems)
        kinds["rerun failed"] += "rerun failed" in text
    by_pair: dict[str, dict] = {}
    for t in trials:
        row = by_pair.setdefault(f"{t.command} {t.fault}", {"runs": 0, "failed": 0, "fault missed": 0})
        row["runs"] += 1
        row["failed"] += not t.ok
        row["fault missed"] += not t.landed
    return {"runs": len(trials), "failed": sum(not t.ok for t in trials), "failures_by_kind": kinds,
            "by_command_and_fault": by_pair, "trials": [asdict(t) for t in trials]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        inner_main(json.loads(argv[1]))
        return 0
    if argv[:1] == ["--hooked"]:
        hooked_main(int(argv[1]), int(argv[2]), argv[4:])
        return 0
    from devcli import emit, parser

    p = parser(__doc__)
    p.add_argument("--n", type=int, default=None, help="number of trials (default 30; --quick: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--commands", default=None, help="default bench,train,export (--quick: export)")
    p.add_argument("--faults", default=None,
                   help="sigint, sigterm, enospc (tmpfs, else hooks), enospc-hook (hooks only), lock "
                        "(default all; --quick: sigint)")
    p.add_argument("--keep", action="store_true", help="keep each trial's folder")
    a = p.parse_args(argv)
    n = a.n or (1 if a.quick else 30)
    commands = (a.commands or ("export" if a.quick else "bench,train,export")).split(",")
    faults = (a.faults or ("sigint" if a.quick else "sigint,sigterm,enospc,lock")).split(",")
    # Started in the background by a shell, this process ignores SIGINT, and so would every fsrt it
    # starts (an ignored signal survives exec): Ctrl-C trials would test nothing. Handle it again.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    use_tmpfs = "enospc" in faults and namespaces_available()
    trials = plan(n, a.seed, commands, faults)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log(f"{len(trials)} trials; ENOSPC by {'a small tmpfs' if use_tmpfs else 'injected hooks'}")
    start = time.monotonic()
    typical = None if a.quick else clean_run_seconds(sorted({t.command for t in trials}))
    if typical:
        log(f"clean runs (faults land within these): {', '.join(f'{c} {s:g}s' for c, s in typical.items())}")
    summary = summarize(run_campaign(trials, use_tmpfs, a.keep, typical, log))
    summary["seconds"] = round(time.monotonic() - start, 1)
    summary["clean_run_s"] = typical or {c: TYPICAL_S[c] for c in commands}
    summary["enospc_by"] = "tmpfs" if use_tmpfs else "hooks"
    emit(summary, a.json, lambda s: print(json.dumps({k: v for k, v in s.items() if k != "trials"}, indent=2)))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
