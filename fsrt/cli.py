"""The ``fsrt`` command line: a click group whose commands load lazily.

Each command lives in ``fsrt/commands/<name>.py`` and is imported only when run, so
``fsrt models`` never imports ONNX Runtime or the trainer. Errors become one line on stderr
starting with ``error:``; bad input exits 2, failed checks exit 1; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

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
    """Console entry point: run the CLI and map errors to one-line messages and exit codes."""
    from fsrt.errors import FsrtError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="fsrt", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        if debug:
            raise
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(2)
    except FsrtError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
