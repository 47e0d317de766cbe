"""The ``fsrt`` command line: a click group whose commands load lazily.

Each command lives in ``fsrt/commands/<name>.py`` and is imported only when run, so
``fsrt models`` never imports ONNX Runtime or the trainer. Errors become one line on stderr
starting with ``error:``; bad input exits 2, failed checks exit 1; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import click

from fsrt import __version__

# command name -> (module under fsrt.commands, one-line help shown in `fsrt --help`)
COMMANDS = {
    "models": ("models", "List the model zoo with flops, params and activations."),
    "complexity": ("complexity", "Per-stage flops/params/acts of a model or spec file."),
    "scale": ("scale", "Scale a model by a strategy to a flops multiplier or target."),
    "scaling": ("scaling", "Sweep a scaling strategy and fit complexity exponents."),
    "sample": ("sample", "Sample AnyNet/RegNet design spaces within a flop band."),
    "train": ("train", "Train a model with the compact AMP trainer."),
    "export": ("export", "Export a model to ONNX (and a TensorRT engine)."),
    "bench": ("bench", "Measure latency across runtimes for a scaling sweep and report."),
    "advise": ("advise", "Recommend the fastest scaling to a flops target from a fitted latency model."),
    "report": ("report", "Rewrite the deployment-latency report from stored runs."),
    "version": ("version", "Print the fsrt version and its key libraries."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is invoked."""

    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        return importlib.util.find_spec(f"fsrt.commands.{COMMANDS[name][0]}") is not None

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        module = importlib.import_module(f"fsrt.commands.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            import difflib

            name = args[0] if args else ""
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else "; see 'fsrt --help'"
            raise click.UsageError(f"no command named {name!r}{hint}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fsrt")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """fsrt: how CNN scaling strategies turn into deployed latency.

    Build scaled RegNet/EfficientNet/ResNet networks from one spec, get their exact
    complexity, train, export and benchmark them across runtimes.

    \b
    Examples:
      fsrt models                          the zoo with flops/params/acts
      fsrt complexity RegNetY-400MF        per-stage breakdown
      fsrt complexity my_spec.yaml --json  machine-readable
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and map errors to one-line messages and exit codes.

    ``--debug`` may stand anywhere before ``--``; it adds the traceback and keeps the exit code.
    """
    args, debug = _take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    try:
        with _terminate_as_interrupt():
            cli.main(args=["--debug", *args] if debug else args, prog_name="fsrt", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:  # bare `fsrt`: the help, as click prints it (stderr, exit 2)
        e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except BaseException as e:
        failure = describe_failure(e)
        if failure is None:
            raise
        code, message = failure
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"error: {message}", err=True)
        sys.exit(code)


def _take_debug_flag(args: list[str]) -> tuple[list[str], bool]:
    """``args`` without ``--debug`` (anywhere before a ``--``), and whether it was there."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != "--debug"]
    return kept + args[end:], len(kept) < end


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Within the block, SIGTERM raises ``Terminated`` (by default it kills without cleanup, leaving
    temp files behind); only the main thread may install signal handlers."""
    import signal
    import threading

    from fsrt.errors import Terminated

    def on_term(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_failure(e: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for an exception the CLI reports without a traceback, or
    None for a bug (which keeps its traceback)."""
    import errno

    from fsrt.errors import FsrtError, Interrupted, interrupt_in_chain, write_failure

    interrupt = interrupt_in_chain(e)
    if isinstance(e, Interrupted):  # it knows its signal, what was kept and how to resume
        return e.exit_code, str(e)
    if interrupt is not None or isinstance(e, click.exceptions.Abort):
        return (143, "terminated") if _terminated(interrupt) else (130, "interrupted")
    if isinstance(e, click.UsageError):
        return 2, e.format_message()
    if isinstance(e, FsrtError):
        return e.exit_code, str(e)
    if _is_out_of_memory(e):
        return 2, (f"out of memory ({_one_line(e)}); lower --batch-size/--batch or --resolution, or use a "
                   "machine with more memory")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        return 2, str(write_failure(e, e.filename or "a file", nothing_written=False))
    return None


def _terminated(interrupt: BaseException | None) -> bool:
    from fsrt.errors import Terminated, exception_chain

    return any(isinstance(x, Terminated) for x in exception_chain(interrupt))


def _is_out_of_memory(e: BaseException) -> bool:
    """A Python MemoryError, torch's OutOfMemoryError (CUDA) or its CPU allocator's failure."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "out of memory" in str(e))


def _one_line(e: BaseException) -> str:
    from fsrt.errors import first_line

    return first_line(e)[:200]


if __name__ == "__main__":
    main()
