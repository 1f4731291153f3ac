"""``her2slide view`` and ``her2slide signoff``."""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress
from pathlib import Path

from her2slide.cli.ish import IHC_CHOICES
from her2slide.cli.options import fail


def add_parser(sub: argparse._SubParsersAction) -> None:
    view = sub.add_parser("view", help="review a scored slide in the browser: zoomable slide, cells, maps, sign-off")
    view.add_argument("result", type=Path, metavar="RESULT_DIR", help="a scored slide's folder (DIR/<slide stem>)")
    view.add_argument("--slide", type=Path, help="the slide file, when it moved since scoring (checked by SHA-256)")
    view.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)")
    view.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this computer only)")
    view.set_defaults(func=_run_view)

    sign = sub.add_parser("signoff", help="record a pathologist's sign-off of a scored slide (signoff.json)")
    sign.add_argument("result", type=Path, metavar="RESULT_DIR", help="a scored slide's folder (DIR/<slide stem>)")
    decision = sign.add_mutually_exclusive_group()
    decision.add_argument("--accept", action="store_true", help="accept the algorithm's score and category")
    decision.add_argument("--score", choices=IHC_CHOICES, help="the pathologist's score (amends the algorithm's)")
    sign.add_argument("--category", help="category with --score where it is not implied (breast 0: HER2-null or "
                                         "HER2-ultralow)")
    sign.add_argument("--reviewer", help="the signing pathologist's name")
    sign.add_argument("--note", default="", help="free text kept with the sign-off")
    sign.add_argument("--show", action="store_true", help="print the sign-off history and change nothing")
    sign.set_defaults(func=_run_signoff)


def _run_view(args: argparse.Namespace) -> int:
    from her2slide.errors import InputError
    from her2slide.viewer.server import ViewerServer

    try:
        server = ViewerServer(args.result, slide=args.slide, host=args.host, port=args.port)
    except InputError as exc:
        return fail(exc)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"her2slide: listening on {args.host}: other computers that reach it can view this slide and sign "
              "it off", file=sys.stderr)
    # uvicorn shuts down gracefully on Ctrl-C or SIGTERM and raises the signal again afterwards:
    # it reaches her2slide.cli.main.main's net, one line and the exit status of every command.
    server.serve_forever(ready=lambda: _announce(f"her2slide viewer for {args.result}: open {server.url} in a browser "
                                                 "(Ctrl-C stops it)"))
    return 0


def _announce(line: str) -> None:
    """Print the viewer's address (from the thread that sees it start); a closed stdout only loses the line."""
    with suppress(OSError):
        print(line, flush=True)


def _run_signoff(args: argparse.Namespace) -> int:
    from her2slide.outputs import signoff
    from her2slide.errors import InputError

    try:
        if args.show:
            for entry in signoff.read_history(args.result):
                print(_entry_line(entry))
            return 0
        if not args.accept and args.score is None:
            raise InputError(args.result, "give --accept or --score (0, 1+, 2+, 3+)")
        entry = signoff.sign_off(args.result, args.reviewer or "", accept=args.accept, score=args.score,
                                 category=args.category, note=args.note)
    except InputError as exc:
        return fail(exc)
    print(_entry_line(entry))
    return 0


def _entry_line(entry: dict) -> str:
    algorithm = entry.get("algorithm") or {}
    shown = entry.get("score") or "not scored"
    was = algorithm.get("score") or "not scored"
    note = f": {entry['note']}" if entry.get("note") else ""
    return (f"{entry.get('time')} {entry.get('reviewer')} {entry.get('decision')} HER2 {shown} "
            f"({entry.get('category') or '-'}; algorithm {was}){note}")
