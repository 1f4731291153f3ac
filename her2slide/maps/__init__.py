"""The slide's coarse maps: the region grid every map writer reads, and the homogeneous / focal /
mosaic heterogeneity call made on it."""
