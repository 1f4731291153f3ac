"""Diagnostic context beside the HER2 score: biopsy sampling risk, bulk-NGS dilution, report wording.

Names are loaded on first use so that registering the CLI subcommands imports nothing heavy.
See docs/diagnostic_context.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from her2slide._lazy import lazy_exports

if TYPE_CHECKING:
    from .ngs import Unreachable, min_amplified_fraction, min_purity, observed_cn
    from .sampling import sampling_risk
    from .wording import decision_support

_WHERE = {
    "sampling_risk": "sampling",
    "observed_cn": "ngs",
    "min_purity": "ngs",
    "min_amplified_fraction": "ngs",
    "Unreachable": "ngs",
    "decision_support": "wording",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
