"""``her2slide signoff``: record a pathologist's sign-off of a scored slide (signoff.json), or show
its history."""

from __future__ import annotations

import argparse
from pathlib import Path

from her2slide.cli.ish import IHC_CHOICES
from her2slide.cli.options import fail


def add_parser(sub: argparse._SubParsersAction) -> None:
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


def _run_signoff(args: argparse.Namespace) -> int:
    from her2slide.errors import InputError
    from her2slide.outputs import signoff

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
