"""Quality control: leave out damaged tissue block by block, and give each slide a verdict.

Every cleared HER2 algorithm asks the pathologist to exclude artefacts before a score is read.
Each tile's owned box is cut into square blocks (``QcSettings.block_um``, 64 µm: a small pen
mark costs a block, not a whole 512 µm tile) and each block gets at most one reason to be left
out (:mod:`her2slide.qc.tile`), judged on per-block pixel statistics (:mod:`her2slide.qc.pixels`)
against slide-wide references (:mod:`her2slide.qc.context`). The slide then passes, passes with
flags, or fails (:mod:`her2slide.qc.verdict`); a failed slide is reported "not scored", never
HER2 0. All thresholds live in ``QcSettings``; their measured basis is in docs/roi_and_qc.md.
"""

from her2slide.qc.context import QcContext, qc_context
from her2slide.qc.slide import QcTally, SlideQc
from her2slide.qc.tile import REASONS, TileQc, assess_tile, interior_dab_od, screen_cells
from her2slide.qc.verdict import SlideEvidence, slide_verdict

__all__ = ["REASONS", "QcContext", "QcTally", "SlideEvidence", "SlideQc", "TileQc", "assess_tile",
           "interior_dab_od", "qc_context", "screen_cells", "slide_verdict"]
