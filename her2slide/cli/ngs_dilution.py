"""``her2slide ngs-dilution``: the bulk-NGS HER2 copy number of a mixed sample, and the purity an
amplification call needs (docs/diagnostic_context.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from her2slide.cli.context_options import add_context_options, context_settings, emit, fail_with, read_scored_slide
from her2slide.cli.options import fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ngs-dilution", help="bulk-NGS HER2 copy number of a mixed sample, and the purity a call needs",
        description="CN_obs = p*(f*CN_a + (1-f)*CN_u) + (1-p)*2 for tumour purity p and amplified fraction f; "
                    "the purity (or f) needed to call amplification; f from a scored slide's 3+ cells.")
    parser.add_argument("--cn-amplified", type=float, required=True, metavar="CN_A",
                        help="HER2 copies per amplified tumour cell (e.g. from ISH signals per cell)")
    parser.add_argument("--cn-unamplified", type=float, metavar="CN_U", help="copies per unamplified tumour cell (default 2)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fraction", type=float, metavar="F", help="amplified share of tumour cells, 0-1")
    source.add_argument("--slide", type=Path, metavar="OUTDIR",
                        help="estimate f as the share of 3+ cells among the slide's tumour cells (a proxy)")
    parser.add_argument("--roi", type=Path, help="with --slide: the region sent to sequencing, as QuPath GeoJSON or a "
                        "polygon list in level-0 pixels (see `score --roi`)")
    parser.add_argument("--purity", type=float, metavar="P", help="tumour purity of the block, 0-1 (never estimated)")
    threshold = parser.add_mutually_exclusive_group()
    threshold.add_argument("--threshold-cn", type=float, help="amplification call at CN >= this (default 6)")
    threshold.add_argument("--threshold-log2", type=float, help="... or at log2(CN/2) >= this")
    parser.add_argument("--region-purity", type=float, metavar="P", help="purity of a macrodissected region")
    parser.add_argument("--region-fraction", type=float, metavar="F", help="its amplified fraction (default: the block's)")
    add_context_options(parser)
    parser.set_defaults(func=run_ngs_dilution)


def _slide_fraction(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """f from the share of 3+ cells in the slide (or its ROI), with the counts and the assumption stated."""
    from her2slide.context.ngs import amplified_share
    from her2slide.errors import InputError

    cells, _ = read_scored_slide(args.slide, ["x", "y", "cell_class"])
    mask = None
    if args.roi is not None:
        from her2slide.qc.roi import load_roi

        mask = load_roi(args.roi, settings.roi).contains(cells["x"], cells["y"])
    try:
        fraction, n3, n = amplified_share(cells["cell_class"], mask)
    except ValueError as exc:
        raise InputError(args.roi or args.slide, str(exc)) from None
    return {
        "path": str(args.slide), "roi": None if args.roi is None else str(args.roi),
        "tumour_cells": n, "cells_3plus": n3, "amplified_fraction": round(fraction, 6),
        "assumption": "IHC 3+ cells are taken to be the HER2-amplified cells: a proxy, since IHC measures "
                      "protein and some 3+ cells are not amplified (and vice versa)",
        "purity": "given on the command line" if args.purity is not None else
                  "not given: her2slide counts tumour cells only, not the non-tumour nuclei that dilute the DNA",
    }


def run_ngs_dilution(args: argparse.Namespace) -> int:
    from her2slide.context.ngs import cn_from_log2, dilution_report
    from her2slide.errors import InputError

    if args.roi is not None and args.slide is None:
        return fail_with("her2slide ngs-dilution", "--roi needs --slide", 2)
    if args.region_fraction is not None and args.region_purity is None:
        return fail_with("her2slide ngs-dilution", "--region-fraction needs --region-purity", 2)
    try:
        settings = context_settings(args, {})
        slide = _slide_fraction(args, settings) if args.slide is not None else None
    except InputError as exc:
        return fail(exc)
    fraction = slide["amplified_fraction"] if slide else args.fraction
    threshold = (cn_from_log2(args.threshold_log2) if args.threshold_log2 is not None
                 else args.threshold_cn if args.threshold_cn is not None else settings.context.ngs_threshold_cn)
    cn_u = args.cn_unamplified if args.cn_unamplified is not None else settings.context.ngs_unamplified_cn
    region = None
    if args.region_purity is not None:
        region = (args.region_purity, fraction if args.region_fraction is None else args.region_fraction)
    try:
        result = dilution_report(args.cn_amplified, threshold, fraction, purity=args.purity,
                                 cn_unamplified=cn_u, region=region)
    except ValueError as exc:
        return fail_with("her2slide ngs-dilution", str(exc), 2)
    data = {**result, "slide": slide}
    emit(args, data, _ngs_text(data))
    return 0


def _cn_text(sample: dict[str, Any]) -> str:
    call = "called amplified" if sample["amplification_called"] else "below the threshold"
    return f"CN {sample['cn']:.2f} (fold change {sample['fold_change']:.2f}, log2 ratio {sample['log2_ratio']:+.2f}): {call}"


def _ngs_text(d: dict[str, Any]) -> str:
    t = d["threshold"]
    lines = [f"amplification call at CN >= {t['cn']:g} (fold change {t['fold_change']:.2f}, log2 ratio {t['log2_ratio']:+.2f})"]
    if d["slide"]:
        s = d["slide"]
        where = f"ROI {s['roi']}" if s["roi"] else "the whole slide"
        lines.append(f"amplified fraction f = {100 * d['amplified_fraction']:.1f}%: {s['cells_3plus']} of "
                     f"{s['tumour_cells']} tumour cells in {where} are 3+ (assumed amplified)")
        if d["sample"] is None:
            lines.append(f"purity {s['purity']}")
    else:
        lines.append(f"amplified fraction f = {100 * d['amplified_fraction']:.1f}%")
    lines.append(f"pure tumour (p = 100%): {_cn_text(d['pure_tumour'])}")
    if d["sample"]:
        lines.append(f"block at purity {100 * d['sample']['purity']:.0f}%: {_cn_text(d['sample'])}")
    if d["region"]:
        r = d["region"]
        lines.append(f"macrodissected region (purity {100 * r['purity']:.0f}%, f {100 * r['amplified_fraction']:.1f}%): {_cn_text(r)}")
    for key, what in (("min_purity", "minimum purity for a call"), ("min_amplified_fraction", "minimum amplified fraction at this purity")):
        answer = d[key]
        if answer is not None:
            value = f"{100 * answer['value']:.1f}%" if answer["value"] is not None else f"none: {answer['reason']}"
            lines.append(f"{what}: {value}")
    lines.append(f"verdict: {d['verdict']}")
    return "\n".join(lines)
