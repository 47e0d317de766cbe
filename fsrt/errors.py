"""User-facing error types.

The CLI turns ``FsrtError`` into a one-line ``error: ...`` message with exit code 2 (bad
input), and ``CheckFailed`` into exit code 1 (a check such as parity ran and failed).
Library code raises these instead of printing, so notebooks get ordinary exceptions.
"""

from __future__ import annotations


class FsrtError(Exception):
    """Bad input or missing prerequisite: the message says what is wrong and what to do."""

    exit_code = 2


class CheckFailed(FsrtError):
    """A check ran to completion and failed (for example an output-parity check)."""

    exit_code = 1


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty:
    third-party errors often span many lines, and fsrt reports one."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C (the CLI installs the handler) so that cleanup and resume paths
    run the same way for both."""


class Interrupted(FsrtError):
    """Work stopped by Ctrl-C or SIGTERM (``by``, the ``KeyboardInterrupt`` caught); ``kept`` says
    what was kept and how to resume. Exits with the shell's code for the signal: 130 for Ctrl-C,
    143 for SIGTERM, and the message starts with "interrupted" or "terminated" to match."""

    exit_code = 130

    def __init__(self, kept: str, by: BaseException | None = None):
        self.terminated = any(isinstance(x, Terminated) for x in exception_chain(by))
        self.exit_code = 143 if self.terminated else 130
        super().__init__(f"{'terminated' if self.terminated else 'interrupted'}; {kept}")


def os_error_text(e: OSError) -> str:
    """What an ``OSError`` means for the user, in words: ``strerror`` when the OS gave one
    (``No space left on device``), otherwise the first line of the message."""
    return e.strerror or first_line(e)


def write_failure(e: OSError, where: str, nothing_written: bool = True) -> FsrtError:
    """A one-line ``FsrtError`` for a failed write into ``where``, saying what to do about it
    (and that nothing was written, which callers writing atomically can promise)."""
    import errno

    advice = {
        errno.ENOSPC: "free some space or write elsewhere",
        errno.EDQUOT: "free some space (disk quota exceeded) or write elsewhere",
        errno.EROFS: "write elsewhere",
        errno.EACCES: "it is not writable by you; fix its permissions or write elsewhere",
        errno.EPERM: "it is not writable by you; fix its permissions or write elsewhere",
    }.get(e.errno, "write elsewhere")
    return FsrtError(f"cannot write {where}: {os_error_text(e)}; {advice}" + (" (nothing was written)"
                                                                               if nothing_written else ""))


def exception_chain(e: BaseException | None):
    """``e``, then the exception it was raised from or during, and so on (each once)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def interrupt_in_chain(e: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one) that ``e`` is or was raised
    from, if any: libraries such as the ONNX exporter wrap it in their own errors."""
    return next((x for x in exception_chain(e) if isinstance(x, KeyboardInterrupt)), None)
