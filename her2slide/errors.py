"""Errors that end up as the one line a user sees.

Every failure caused by the input (not by a bug) is an ``InputError`` carrying the
file it concerns and a reason written for a person. The CLI prints
``her2slide: <file>: <reason>`` and exits non-zero; a batch records the same line
and goes on with the next slide.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A problem with an input file that the user can act on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


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
    if not isinstance(data, dict):
        raise InputError(path, "not a JSON object")
    return data
