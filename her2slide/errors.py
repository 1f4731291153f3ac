"""Errors that end up as the one line a user sees, and the exit statuses of the commands.

Every failure caused by the input (not by a bug) is an ``InputError`` carrying the
file it concerns and a reason written for a person. The CLI prints
``her2slide: <file>: <reason>`` and exits non-zero; a batch records the same line
and goes on with the next slide.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class InputError(Exception):
    """A problem with an input file that the user can act on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Rebuilt from (path, reason), so the error survives pickling: a DataLoader or Dask
        # worker process hands it back to the process that reports it.
        return type(self), (self.path, self.reason)


class UnsuitableSlideError(InputError):
    """The file opens, but it is not something we may score (fluorescence, H&E, no tissue...).

    Kept distinct so that callers can tell "could not read" from "read, and refused":
    a refused slide must never be reported as HER2 0.
    """


def read_json_object(path: Path, missing: str) -> dict:
    """A JSON object read from ``path``; :class:`InputError` with ``missing`` or the cause otherwise."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(path, missing) from exc
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read ({exc})") from exc
    except RecursionError:
        raise InputError(path, "cannot be read (JSON nested too deeply)") from None
    if not isinstance(data, dict):
        raise InputError(path, "not a JSON object")
    return data


class OutputFolderError(InputError):
    """The slide's output folder cannot be used: its name, another run holding it, files
    her2slide did not write, or a folder that cannot be written. Nothing is written for
    such a slide, not even a failure record (the folder is not ours to write into)."""


class SlideTimeout(BaseException):
    """A slide ran past the batch's per-slide time limit. A BaseException, like
    KeyboardInterrupt, so no ``except Exception`` on the way swallows it."""


class ExitStatus(IntEnum):
    """Exit statuses shared by the commands (README, "Exit status")."""

    OK = 0
    FAILED = 1  # a file could not be scored (its line says why), or the command could not run
    USAGE = 2  # the command line or the batch set-up is wrong (argparse uses 2 as well)
    NOT_REPRODUCED = 3  # calibrate: no thresholds reproduce every control
    NOT_SCORED = 4  # every file was read, but at least one failed QC: "not scored", never a score
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # SIGTERM, e.g. a scheduler's time limit (128 + SIGTERM)
    BROKEN_PIPE = 141  # stdout closed by the reader, e.g. `| head` (128 + SIGPIPE)
