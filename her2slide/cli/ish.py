"""The ``her2slide ish`` subcommand: dual-probe ISH group and final status from the command line.

Kept free of heavy imports so ``her2slide --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys

# The IHC choices equal rules.CELL_CLASSES; spelled out so registering the parser imports nothing heavy.
IHC_CHOICES = ("0", "1+", "2+", "3+")

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ish`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "ish",
        help="dual-probe ISH group (1-5) and HER2 status with the concurrent-IHC work-up (ASCO/CAP 2018)",
        description=(
            "Classify a dual-probe ISH result into ASCO/CAP 2018 group 1-5 and give the HER2 status, "
            "using concurrent IHC (and a blinded recount for IHC 2+) for groups 2-4."
        ),
    )
    p.add_argument("--ratio", type=float, required=True, help="HER2/CEP17 ratio")
    p.add_argument("--copies", type=float, required=True, help="average HER2 copy number (signals per cell)")
    p.add_argument("--ihc", choices=IHC_CHOICES, default=None, help="concurrent IHC score on the same tissue")
    p.add_argument(
        "--recount-same-group",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="IHC 2+ only: the additional blinded observer's recount fell in the same ISH group "
        "(--no-recount-same-group: it did not; omit if not yet done)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the ISH answer; bad numbers give one line on stderr and exit code 2."""
    from her2slide.scoring.ish import ish_result

    try:
        result = ish_result(args.ratio, args.copies, ihc=args.ihc, recount_same_group=args.recount_same_group)
    except ValueError as exc:
        print(f"her2slide ish: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = {
            "input": {
                "ratio": args.ratio,
                "copies": args.copies,
                "ihc": args.ihc,
                "recount_same_group": args.recount_same_group,
            },
            **result.to_dict(),
        }
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    status = "HER2 status pending" if result.status == "pending" else f"HER2 {result.status}"
    print(f"ISH group {result.group}: {status}")
    print(result.reason)
    if result.comment:
        print(f"Comment: {result.comment}")
    return 0
