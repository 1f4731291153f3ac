"""The ``sampling-risk`` and ``ngs-dilution`` subcommands (diagnostic context, docs/diagnostic_context.md).

Registering them imports nothing heavy: numpy, pyarrow and pydantic load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]

CRITERIA = ("breast", "gastric-resection", "gastric-biopsy")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings YAML (section `context`; see configs/default.yaml)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON result to FILE (atomically)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``sampling-risk`` and ``ngs-dilution`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "sampling-risk", help="how often simulated core-needle biopsies of a scored resection miss its HER2 score",
        description="Simulate core-needle biopsies across a scored section (cells.parquet) and report, for 1..K "
                    "cores, how often the biopsy scores lower than (or differently from) the whole slide.")
    p.add_argument("slide", type=Path, metavar="OUTDIR_OR_CELLS_PARQUET",
                   help="a scored slide's output folder (report.json + cells.parquet) or a cells.parquet")
    p.add_argument("--criteria", choices=CRITERIA, help="scoring criteria (default: the slide's report.json)")
    p.add_argument("--gauge", type=int, choices=(14, 16, 18), help="needle gauge (default 14)")
    p.add_argument("--core-width-um", type=float, help="core width in µm (overrides the gauge)")
    p.add_argument("--core-length-um", type=float, help="core length in µm (default 15000)")
    p.add_argument("--cores", type=int, help="report biopsies of 1..CORES cores (default 6)")
    p.add_argument("--simulations", type=int, help="simulated biopsies (default 2000)")
    p.add_argument("--min-core-cells", type=int, help="fewer tumour cells make a biopsy non-diagnostic (default 50)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    _common(p)
    p.set_defaults(func=run_sampling_risk)

    q = subparsers.add_parser(
        "ngs-dilution", help="bulk-NGS HER2 copy number of a mixed sample, and the purity a call needs",
        description="CN_obs = p*(f*CN_a + (1-f)*CN_u) + (1-p)*2 for tumour purity p and amplified fraction f; "
                    "the purity (or f) needed to call amplification; f from a scored slide's 3+ cells.")
    q.add_argument("--cn-amplified", type=float, required=True, metavar="CN_A",
                   help="HER2 copies per amplified tumour cell (e.g. from ISH signals per cell)")
    q.add_argument("--cn-unamplified", type=float, metavar="CN_U", help="copies per unamplified tumour cell (default 2)")
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--fraction", type=float, metavar="F", help="amplified share of tumour cells, 0-1")
    source.add_argument("--slide", type=Path, metavar="OUTDIR",
                        help="estimate f as the share of 3+ cells among the slide's tumour cells (a proxy)")
    q.add_argument("--roi", type=Path, help="with --slide: the region sent to sequencing, as QuPath GeoJSON or a "
                                            "polygon list in level-0 pixels (see `score --roi`)")
    q.add_argument("--purity", type=float, metavar="P", help="tumour purity of the block, 0-1 (never estimated)")
    threshold = q.add_mutually_exclusive_group()
    threshold.add_argument("--threshold-cn", type=float, help="amplification call at CN >= this (default 6)")
    threshold.add_argument("--threshold-log2", type=float, help="... or at log2(CN/2) >= this")
    q.add_argument("--region-purity", type=float, metavar="P", help="purity of a macrodissected region")
    q.add_argument("--region-fraction", type=float, metavar="F", help="its amplified fraction (default: the block's)")
    _common(q)
    q.set_defaults(func=run_ngs_dilution)


# ---------------------------------------------------------------- shared


def _fail(prefix: str, message: str, code: int) -> int:
    print(f"{prefix}: {message}", file=sys.stderr)
    return code


def _context_settings(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """Settings with command-line overrides of the `context` section, validated like the config file."""
    from pydantic import ValidationError

    from her2slide.config import ContextSettings, load_settings
    from her2slide.errors import InputError

    settings = load_settings(args.config, criteria=getattr(args, "criteria", None))
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        context = ContextSettings.model_validate({**settings.context.model_dump(), **given})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError("settings", f"invalid setting context.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return settings.model_copy(update={"context": context})


def _read_slide(path: Path, columns: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Columns of a scored slide's cells.parquet and its report.json (None when there is none)."""
    import pyarrow.parquet as pq

    from her2slide.errors import InputError

    cells = path / "cells.parquet" if path.is_dir() else path
    if not cells.is_file():
        raise InputError(cells, "not found: expected a scored slide's output folder or its cells.parquet")
    report_path = cells.with_name("report.json")
    report = None
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(report_path, f"not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise InputError(report_path, "nested too deeply to be a her2slide report") from None
        if isinstance(report, dict) and report.get("status") == "not-scored":
            # Its cells failed QC: anything computed from them would read as a scored slide.
            raise InputError(report_path, "this slide was not scored (QC failed: "
                                          f"{'; '.join((report.get('qc') or {}).get('reasons') or ['see report.json'])}"
                                          "); its cells cannot stand for it")
    try:
        schema = pq.read_schema(cells)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(cells, f"cannot be read as Parquet ({exc.__class__.__name__})") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise InputError(cells, f"cells table lacks column(s) {', '.join(missing)}")
    table = pq.read_table(cells, columns=columns)
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in columns}, report


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    from her2slide.outputs.atomic import write_json_atomic

    if args.out is not None:
        write_json_atomic(args.out, data)
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else text)


# ---------------------------------------------------------------- sampling-risk


def run_sampling_risk(args: argparse.Namespace) -> int:
    from her2slide.context.sampling import format_table, sampling_risk
    from her2slide.errors import InputError

    try:
        cells, report = _read_slide(args.slide, ["x_um", "y_um", "cell_class"])
        if args.criteria is None and report is not None:
            args.criteria = report.get("criteria")
        settings = _context_settings(args, {
            "needle_gauge": args.gauge, "core_width_um": args.core_width_um, "core_length_um": args.core_length_um,
            "max_cores": args.cores, "simulations": args.simulations, "min_core_cells": args.min_core_cells,
            "seed": args.seed})
    except InputError as exc:
        return _fail("her2slide", str(exc), 1)
    try:
        result = sampling_risk(cells["x_um"], cells["y_um"], cells["cell_class"], settings.criteria,
                               settings.scoring, settings.context)
    except ValueError as exc:
        return _fail("her2slide", f"{args.slide}: {exc}", 1)
    data = {"input": str(args.slide), **result}
    if report is not None and report.get("score") not in (None, result["slide"]["score"]):
        data["note"] = (f"report.json says {report['score']}; the rules in use score the same cells "
                        f"{result['slide']['score']}, which is what the cores are compared with")
    _emit(args, data, format_table(result) + (f"\nnote: {data['note']}" if "note" in data else ""))
    return 0


# ---------------------------------------------------------------- ngs-dilution


def _slide_fraction(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """f from the share of 3+ cells in the slide (or its ROI), with the counts and the assumption stated."""
    from her2slide.context.ngs import amplified_share
    from her2slide.errors import InputError

    cells, _ = _read_slide(args.slide, ["x", "y", "cell_class"])
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
        return _fail("her2slide ngs-dilution", "--roi needs --slide", 2)
    if args.region_fraction is not None and args.region_purity is None:
        return _fail("her2slide ngs-dilution", "--region-fraction needs --region-purity", 2)
    try:
        settings = _context_settings(args, {})
        slide = _slide_fraction(args, settings) if args.slide is not None else None
    except InputError as exc:
        return _fail("her2slide", str(exc), 1)
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
        return _fail("her2slide ngs-dilution", str(exc), 2)
    data = {**result, "slide": slide}
    _emit(args, data, _ngs_text(data))
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
