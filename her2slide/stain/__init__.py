"""Stain optics: colour deconvolution into haematoxylin and DAB optical densities, the slide's
white point they are measured against, and the per-slide stain those make.

Pure functions on pixel arrays: nothing here reads a slide (the run reads the stain sample,
her2slide.run.stain_sample, and hands its pixels in).
"""

from her2slide.stain.deconvolution import (DAB_RGB_OD, HAEMATOXYLIN_RGB_OD, StainModel, VectorFit, angle_deg,
                                           brightest_white, compose_rgb, estimate_stain_model, estimate_white_point,
                                           fit_stain_vectors, log_brightness, macenko_directions, od_to_rgb,
                                           rgb_to_od, stain_amounts)
from her2slide.stain.slide_stain import SlideStain
from her2slide.stain.white_point import WhitePoint

__all__ = ["DAB_RGB_OD", "HAEMATOXYLIN_RGB_OD", "SlideStain", "StainModel", "VectorFit", "WhitePoint", "angle_deg",
           "brightest_white", "compose_rgb", "estimate_stain_model", "estimate_white_point", "fit_stain_vectors",
           "log_brightness", "macenko_directions", "od_to_rgb", "rgb_to_od", "stain_amounts"]
