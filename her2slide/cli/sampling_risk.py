"""``her2slide sampling-risk``: how often simulated core-needle biopsies of a scored resection miss
its HER2 score (docs/diagnostic_context.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from her2slide.cli.context_options import add_context_options, context_settings, emit, fail_with, read_scored_slide
from her2slide.cli.options import CRITERIA, fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sampling-risk", help="how often simulated core-needle biopsies of a scored resection miss its HER2 score",
        description="Simulate core-needle biopsies across a scored section (cells.parquet) and report, for 1..K "
                    "cores, how often the biopsy scores lower than (or differently from) the whole slide.")
    parser.add_argument("slide", type=Path, metavar="OUTDIR_OR_CELLS_PARQUET",
                        help="a scored slide's output folder (report.json + cells.parquet) or a cells.parquet")
    parser.add_argument("--criteria", choices=CRITERIA, help="scoring criteria (default: the slide's report.json)")
    parser.add_argument("--gauge", type=int, choices=(14, 16, 18), help="needle gauge (default 14)")
    parser.add_argument("--core-width-um", type=float, help="core width in µm (overrides the gauge)")
    parser.add_argument("--core-length-um", type=float, help="core length in µm (default 15000)")
    parser.add_argument("--cores", type=int, help="report biopsies of 1..CORES cores (default 6)")
    parser.add_argument("--simulations", type=int, help="simulated biopsies (default 2000)")
    parser.add_argument("--min-core-cells", type=int, help="fewer tumour cells make a biopsy non-diagnostic (default 50)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    add_context_options(parser)
    parser.set_defaults(func=run_sampling_risk)


def run_sampling_risk(args: argparse.Namespace) -> int:
    from her2slide.context.sampling import format_table, sampling_risk
    from her2slide.errors import InputError

    try:
        cells, report = read_scored_slide(args.slide, ["x_um", "y_um", "cell_class"])
        if args.criteria is None and report is not None:
            args.criteria = report.get("criteria")
        settings = context_settings(args, {
            "needle_gauge": args.gauge, "core_width_um": args.core_width_um, "core_length_um": args.core_length_um,
            "max_cores": args.cores, "simulations": args.simulations, "min_core_cells": args.min_core_cells,
            "seed": args.seed})
    except InputError as exc:
        return fail(exc)
    try:
        result = sampling_risk(cells["x_um"], cells["y_um"], cells["cell_class"], settings.criteria,
                               settings.scoring, settings.context)
    except ValueError as exc:
        return fail_with("her2slide", f"{args.slide}: {exc}", 1)
    data = {"input": str(args.slide), **result}
    if report is not None and report.get("score") not in (None, result["slide"]["score"]):
        data["note"] = (f"report.json says {report['score']}; the rules in use score the same cells "
                        f"{result['slide']['score']}, which is what the cores are compared with")
    emit(args, data, format_table(result) + (f"\nnote: {data['note']}" if "note" in data else ""))
    return 0


# ---------------------------------------------------------------- ngs-dilution
