"""Reading slides: one reader interface over OpenSlide and plain images, tissue mask, tile plan.

``open_slide`` → ``reader.thumbnail`` → ``check_suitability`` → ``detect_tissue`` →
``plan_tiles``; every coordinate is in level-0 pixels, every resolution names its unit.
"""

from her2slide.slide.checks import check_suitability
from her2slide.slide.open import open_slide
from her2slide.slide.reader import SlideReader
from her2slide.slide.tiles import Tile, TilePlan, plan_tiles
from her2slide.slide.tissue import TissueMask, detect_tissue

__all__ = ["SlideReader", "TissueMask", "Tile", "TilePlan", "check_suitability", "detect_tissue",
           "open_slide", "plan_tiles"]
