"""One worker process per runtime, and the coordinator's handle on it.

Why processes: runtimes keep thread pools that spin after a call (OpenMP, ONNX Runtime,
OpenVINO's TBB) and arenas that never shrink. In one process, the runtime timed a moment ago
still burns a core while the next one is timed, and memory figures mix every runtime's.
Each runtime therefore lives in its own ``python -m fsrt.bench.worker`` process, which sits
blocked on its pipe until the coordinator asks it to time a window; the coordinator wakes one
worker at a time and pauses between windows (``RoundConfig.cooldown_s``). A worker loads what its
runtime needs and nothing else: ONNX Runtime's and OpenVINO's never import torch
(``Runner.loads_torch``), as a deployment of them would not.

Protocol: pickled tuples over the worker's stdin/stdout. The first message is a ``HostConfig``;
then ``("prepare", PrepareRequest)``, ``("window", job)``, ``("parts", job)`` (a training step's
forward/backward split of the last window), ``("release", job)``, ``("quit",)``,
each answered by ``("ok", result)`` or ``("error", one line)``. The worker ignores SIGINT (the
coordinator handles Ctrl-C and ends it) and writes its own diagnostics to a log file.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fsrt.bench.host import HostConfig, JobHost, Prepared, PrepareRequest
from fsrt.errors import first_line


class WorkerFailed(RuntimeError):
    """A job failed inside a worker (the message is the worker's one-line reason)."""


class WorkerDied(RuntimeError):
    """A worker process ended unexpectedly (crash, killed for memory); its jobs are lost."""


def _thread_env(threads: int) -> dict[str, str]:
    """Environment that fixes every thread pool a runtime might start to ``threads``."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "TBB_NUM_THREADS": n,
            "PYTHONUNBUFFERED": "1"}


class WorkerProcess:
    """The coordinator's handle on one runtime's worker process."""

    def __init__(self, cfg: HostConfig, log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, **_thread_env(cfg.threads)}
        self.proc = subprocess.Popen([sys.executable, "-m", "fsrt.bench.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=env)
        self._send(cfg)

    def _send(self, msg) -> None:
        try:
            pickle.dump(msg, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def _died(self) -> WorkerDied:
        code = self.proc.poll()
        if code is None:
            self.proc.kill()
            code = self.proc.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = _last_line(self.log_path)
        return WorkerDied(f"the {self.log_path.stem} worker process ended ({how})" + (f": {tail}" if tail else ""))

    def call(self, *msg):
        """Send one request and return its result; ``WorkerFailed`` / ``WorkerDied`` on failure."""
        self._send(msg)
        try:
            status, result = pickle.load(self.proc.stdout)
        except (EOFError, pickle.UnpicklingError, OSError):
            raise self._died() from None
        if status == "error":
            raise WorkerFailed(result)
        return result

    def close(self, kill: bool = False) -> None:
        """End the worker (politely unless ``kill``)."""
        if self.proc.poll() is None:
            if not kill:
                try:
                    self._send(("quit",))
                    self.proc.wait(timeout=20)
                except (WorkerDied, subprocess.TimeoutExpired):
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


class WorkerPool:
    """Runtimes' workers, started on first use: ``prepare``, ``window``, ``release`` by runtime."""

    def __init__(self, make_cfg: Callable[[str], HostConfig], log_dir: Path):
        self.make_cfg, self.log_dir = make_cfg, log_dir
        self.workers: dict[str, WorkerProcess] = {}

    def _worker(self, runtime: str) -> WorkerProcess:
        if runtime not in self.workers:
            self.workers[runtime] = WorkerProcess(self.make_cfg(runtime), self.log_dir / f"{runtime}.log")
        return self.workers[runtime]

    def _call(self, runtime: str, *msg):
        try:
            return self._worker(runtime).call(*msg)
        except WorkerDied:
            self.workers.pop(runtime).close(kill=True)  # the next request starts a fresh worker
            raise

    def prepare(self, runtime: str, req: PrepareRequest) -> Prepared:
        """Prepare a job in its runtime's worker."""
        return self._call(runtime, "prepare", req)

    def window(self, runtime: str, job: str) -> list[float]:
        """Time one window of a prepared job."""
        return self._call(runtime, "window", job)

    def parts(self, runtime: str, job: str) -> dict[str, list[float]]:
        """Per-part times of a job's last window (training steps); see ``JobHost.parts``."""
        return self._call(runtime, "parts", job)

    def release(self, runtime: str, job: str) -> None:
        """Free a job in its worker."""
        if runtime in self.workers:
            self._call(runtime, "release", job)

    def close(self, kill: bool = False) -> None:
        """End every worker."""
        for w in self.workers.values():
            w.close(kill=kill)
        self.workers.clear()


class InProcessPool:
    """The same interface with every runtime's ``JobHost`` in this process (tests, fake runners)."""

    def __init__(self, make_cfg: Callable[[str], HostConfig], make_runner=None, make_train_runner=None):
        self.make_cfg, self.make_runner, self.make_train_runner = make_cfg, make_runner, make_train_runner
        self.hosts: dict[str, JobHost] = {}

    def _host(self, runtime: str) -> JobHost:
        if runtime not in self.hosts:
            self.hosts[runtime] = JobHost(self.make_cfg(runtime), self.make_runner, self.make_train_runner)
        return self.hosts[runtime]

    def prepare(self, runtime: str, req: PrepareRequest) -> Prepared:
        """Prepare a job; a runner's exception becomes ``WorkerFailed`` as in a worker."""
        try:
            return self._host(runtime).prepare(req)
        except Exception as e:
            raise WorkerFailed(_one_line(e)) from None

    def window(self, runtime: str, job: str) -> list[float]:
        """Time one window of a prepared job."""
        return self._host(runtime).window(job)

    def parts(self, runtime: str, job: str) -> dict[str, list[float]]:
        """Per-part times of a job's last window (training steps)."""
        return self._host(runtime).parts(job)

    def release(self, runtime: str, job: str) -> None:
        """Free a job."""
        if runtime in self.hosts:
            self.hosts[runtime].release(job)

    def close(self, kill: bool = False) -> None:
        """Free every job."""
        for h in self.hosts.values():
            h.close()
        self.hosts.clear()


def _one_line(e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return "MemoryError: out of memory while preparing or running this model (try a smaller batch or s)"
    return f"{type(e).__name__}: {first_line(e)[:300]}" if str(e).strip() else type(e).__name__


def _loads_torch(runtime: str) -> bool:
    """Whether the runtime runs through PyTorch (unknown names: assume it does)."""
    from fsrt.bench.runners import all_runners

    runner = all_runners().get(runtime)
    return runner is None or runner.loads_torch


def _configure_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (a runtime touched torch's pools first)
        pass


def main() -> None:
    """Worker loop (``python -m fsrt.bench.worker``); see the module docstring."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in = sys.stdin.buffer
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to the log, never into the protocol
    sys.stdout = sys.stderr
    cfg: HostConfig = pickle.load(proto_in)
    if _loads_torch(cfg.runtime):  # otherwise torch is never imported here (``Runner.loads_torch``)
        _configure_threads(cfg.threads)
    host = JobHost(cfg)
    handlers = {"prepare": host.prepare, "window": host.window, "parts": host.parts, "release": host.release}
    while True:
        try:
            msg = pickle.load(proto_in)
        except EOFError:
            break
        if msg[0] == "quit":
            break
        try:
            reply = ("ok", handlers[msg[0]](*msg[1:]))
        except Exception as e:
            reply = ("error", _one_line(e))
        pickle.dump(reply, proto_out, protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.flush()
    host.close()
    print(f"{cfg.runtime} worker ends; libraries loaded in it: {', '.join(_loaded_libraries()) or 'none'}",
          file=sys.stderr, flush=True)


def _loaded_libraries() -> list[str]:
    """The model libraries this process has imported (logged: what the timed process carried)."""
    return [m for m in ("torch", "onnxruntime", "openvino", "tensorrt", "triton") if m in sys.modules]


if __name__ == "__main__":
    main()
