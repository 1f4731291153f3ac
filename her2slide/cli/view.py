"""``her2slide view``: review a scored slide in the browser, cell by cell (her2slide.viewer)."""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress
from pathlib import Path

from her2slide.cli.options import fail


def add_parser(sub: argparse._SubParsersAction) -> None:
    view = sub.add_parser("view", help="review a scored slide in the browser: zoomable slide, cells, maps, sign-off")
    view.add_argument("result", type=Path, metavar="RESULT_DIR", help="a scored slide's folder (DIR/<slide stem>)")
    view.add_argument("--slide", type=Path, help="the slide file, when it moved since scoring (checked by SHA-256)")
    view.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)")
    view.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this computer only)")
    view.set_defaults(func=_run_view)


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
