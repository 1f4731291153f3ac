"""Running the data path: one slide (``pipeline``: stain sample, tile stream, segmenter ``engine``,
scoring, outputs), many slides (``batch``, on Dask), and the threshold fit (``calibrate``).

The stages themselves live in their own packages; this package orders them, feeds them tiles and
keeps a slide's failure, time limit and progress to itself.
"""
