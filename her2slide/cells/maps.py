"""What a segmenter hands to cell finding: per-pixel evidence for one tile (:class:`CellMaps`).

The interface between the two steps of cell measurement. A segmenter (the classical one in
her2slide.cells.classical, or a network in her2slide.run.engine) turns an RGB tile into maps;
:func:`her2slide.cells.instances.find_cells` and :func:`her2slide.cells.membrane.measure_cells` turn
maps into cells. DAB is always measured from the image, never from a model output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CellMaps:
    """Per-pixel evidence for one tile at working resolution (all float32, same shape)."""

    nucleus: np.ndarray  # probability that a pixel is nuclear, 0–1
    membrane: np.ndarray  # membrane evidence, 0–1 (drives cell boundaries only)
    tumour: np.ndarray  # probability of tumour epithelium, 0–1
    dab: np.ndarray  # DAB amount (OD units); the quantity that is measured
    nuclei: np.ndarray | None = None  # nucleus instances, if the segmenter already has them
    nucleus_props: dict[str, np.ndarray] | None = None  # nucleus_props(nuclei), given only with nuclei
