"""The ``her2slide`` command.

Subcommands register themselves through ``add_parser(subparsers)`` and import their
heavy dependencies only when they run, so ``her2slide --help`` stays instant. Input
problems end as one line ``her2slide: <file>: <reason>`` on stderr and a non-zero exit
(``ExitStatus`` in her2slide.errors). :func:`main` is the last net under every command:
Ctrl-C and SIGTERM end as one line ("interrupted", "terminated") after the partial outputs
are removed, a closed stdout (``| head``) ends quietly, and an unexpected error is one line
too (``HER2SLIDE_DEBUG=1`` adds its traceback). Each command first catches what it can
name itself, per file, so its other files still run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from her2slide import __version__
from her2slide.cli.options import fail, report_unexpected


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so partial outputs are removed as after Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _quiet_stdout() -> None:
    """The reader of stdout has gone (``| head``): send what is left to /dev/null, so that
    Python's flush at exit does not complain about the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each module registers its own (``add_parser``)."""
    from her2slide.cli.batch import add_parser as add_batch
    from her2slide.cli.calibrate import add_parser as add_calibrate
    from her2slide.cli.demo import add_parser as add_demo
    from her2slide.cli.ish import add_parser as add_ish
    from her2slide.cli.ngs_dilution import add_parser as add_ngs_dilution
    from her2slide.cli.sampling_risk import add_parser as add_sampling_risk
    from her2slide.cli.score import add_parser as add_score
    from her2slide.cli.signoff import add_parser as add_signoff
    from her2slide.cli.synth import add_parser as add_synth
    from her2slide.cli.train import add_parser as add_train
    from her2slide.cli.view import add_parser as add_view

    parser = argparse.ArgumentParser(prog="her2slide", description="Whole-slide HER2 IHC scoring (ASCO/CAP).")
    parser.add_argument("--version", action="version", version=f"her2slide {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_score(sub)
    add_batch(sub)
    add_demo(sub)
    add_synth(sub)
    add_ish(sub)
    add_calibrate(sub)
    add_train(sub)
    add_sampling_risk(sub)
    add_ngs_dilution(sub)
    add_view(sub)
    add_signoff(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from her2slide.errors import ExitStatus, InputError

    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return status
    except Terminated:
        print("her2slide: terminated", file=sys.stderr)
        return ExitStatus.TERMINATED
    except KeyboardInterrupt:
        print("her2slide: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return ExitStatus.BROKEN_PIPE
    except InputError as exc:
        return fail(exc)
    except Exception as exc:  # noqa: BLE001 -- the last net: one line, never a traceback
        report_unexpected(args.command, exc)
        return ExitStatus.FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
