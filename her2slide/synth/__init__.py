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
    from .draw_layout import make_layout
    from .layout import Layout, LayoutParams
    from .render import Region, render_region
    from .scene import Look, Scene
    from .slides import SyntheticSlide, build_scene, make_suite, make_synthetic_slide, suite_specs
    from .spec import MIXTURES, PHENOTYPES, MembraneDesign, SlideSpec
    from .svs import write_svs
    from .tiles import make_training_tiles

_WHERE = {
    "FAMILIES": "families", "HELD_OUT": "families", "TRAINING_FAMILIES": "families", "Family": "families",
    "Layout": "layout", "LayoutParams": "layout", "make_layout": "draw_layout",
    "Look": "scene", "Scene": "scene", "Region": "render", "render_region": "render",
    "MIXTURES": "spec", "PHENOTYPES": "spec", "MembraneDesign": "spec", "SlideSpec": "spec",
    "SyntheticSlide": "slides", "build_scene": "slides", "make_suite": "slides",
    "make_synthetic_slide": "slides", "suite_specs": "slides",
    "write_svs": "svs",
    "make_training_tiles": "tiles",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
