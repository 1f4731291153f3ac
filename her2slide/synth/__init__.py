"""Synthetic HER2 IHC whole slides and training tiles with exact ground truth.

``make_synthetic_slide(SlideSpec(...), out_dir)`` writes a pyramidal Aperio SVS plus a per-cell
truth table and the true score; ``make_suite`` writes an evaluation suite; ``make_training_tiles``
writes image/mask tiles for the membrane network, in v1's look or in named style families
(``FAMILIES``; ``HELD_OUT`` is kept out of training). See docs/synthetic.md.

Names are loaded on first use so that registering the ``synth`` CLI stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from her2slide._lazy import lazy_exports

if TYPE_CHECKING:
    from .families import FAMILIES, HELD_OUT, TRAINING_FAMILIES, Family
    from .layout import Layout, LayoutParams, make_layout
    from .render import Look, Region, Scene, render_region
    from .slides import MIXTURES, PHENOTYPES, MembraneDesign, SlideSpec, SyntheticSlide, build_scene, \
        make_suite, make_synthetic_slide, suite_specs
    from .svs import write_svs
    from .tiles import make_training_tiles

_WHERE = {
    "FAMILIES": "families", "HELD_OUT": "families", "TRAINING_FAMILIES": "families", "Family": "families",
    "Layout": "layout", "LayoutParams": "layout", "make_layout": "layout",
    "Look": "render", "Region": "render", "Scene": "render", "render_region": "render",
    "MIXTURES": "slides", "PHENOTYPES": "slides", "MembraneDesign": "slides", "SlideSpec": "slides",
    "SyntheticSlide": "slides", "build_scene": "slides", "make_suite": "slides",
    "make_synthetic_slide": "slides", "suite_specs": "slides",
    "write_svs": "svs",
    "make_training_tiles": "tiles",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
