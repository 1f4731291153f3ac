"""What ``sampling-risk`` and ``ngs-dilution`` share: their options, the context settings with the
command line on top, reading a scored slide, and printing or writing the result.

Nothing heavy at import: numpy, pyarrow and pydantic load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_context_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings YAML (section `context`; see configs/default.yaml)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON result to FILE (atomically)")


def fail_with(prefix: str, message: str, code: int) -> int:
    print(f"{prefix}: {message}", file=sys.stderr)
    return code


def context_settings(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
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


def read_scored_slide(path: Path, columns: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
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


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    from her2slide.outputs.atomic import write_json_atomic

    if args.out is not None:
        write_json_atomic(args.out, data)
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else text)
