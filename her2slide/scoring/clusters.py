"""Cohesive tumour-cell clusters, for the gastric biopsy rule ("a cluster of >= 5 cells").

Cells are graph nodes; two cells are linked when their centroids are at most ``link_um``
apart. A cluster of class k is a connected component of the cells whose class is at least k,
so an unstained cell between two stained ones breaks cohesion for the stained class.
One KD-tree query finds all neighbour pairs; each class only filters those pairs.
"""

from __future__ import annotations

import numpy as np

# scipy is imported inside the functions: the package is imported by the CLI, which must start fast.

__all__ = ["neighbour_pairs", "cluster_labels", "largest_cluster_sizes"]


def _check_xy(xy_um: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy_um, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy_um must have shape (N, 2), got {xy.shape}")
    if not np.all(np.isfinite(xy)):
        raise ValueError("xy_um contains NaN or infinite coordinates")
    return xy


def neighbour_pairs(xy_um: np.ndarray, link_um: float) -> np.ndarray:
    """(P, 2) index pairs i < j of cells whose centroids are at most ``link_um`` apart."""
    xy = _check_xy(xy_um)
    if not (np.isfinite(link_um) and link_um > 0):
        raise ValueError(f"link_um must be a positive finite distance, got {link_um}")
    if len(xy) < 2:
        return np.empty((0, 2), dtype=np.intp)
    from scipy.spatial import cKDTree

    return cKDTree(xy).query_pairs(r=float(link_um), output_type="ndarray").astype(np.intp, copy=False)


def cluster_labels(n_cells: int, pairs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Connected-component label per cell over the linked ``pairs`` among cells in ``mask``.

    Cells outside ``mask`` get label -1; labels of the others are 0..C-1.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keep = np.ones(n_cells, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(keep)
    labels = np.full(n_cells, -1, dtype=np.intp)
    if idx.size == 0:
        return labels
    sub = np.full(n_cells, -1, dtype=np.intp)
    sub[idx] = np.arange(idx.size)
    p = pairs[keep[pairs[:, 0]] & keep[pairs[:, 1]]] if len(pairs) else pairs.reshape(0, 2)
    graph = coo_matrix(
        (np.ones(len(p), dtype=np.int8), (sub[p[:, 0]], sub[p[:, 1]])), shape=(idx.size, idx.size)
    ).tocsr()
    _, comp = connected_components(graph, directed=False)
    labels[idx] = comp
    return labels


def largest_cluster_sizes(xy_um: np.ndarray, cell_classes: np.ndarray, link_um: float) -> np.ndarray:
    """Size of the largest cohesive cluster of cells with class >= k, for k = 0..3 (int64, shape (4,))."""
    xy = _check_xy(xy_um)
    classes = np.asarray(cell_classes)
    if classes.shape != (len(xy),):
        raise ValueError(f"cell_classes has shape {classes.shape}, but xy_um holds {len(xy)} cells")
    pairs = neighbour_pairs(xy, link_um)
    sizes = np.zeros(4, dtype=np.int64)
    for k in range(4):  # four classes, not a loop over cells
        labels = cluster_labels(len(xy), pairs, classes >= k)
        kept = labels[labels >= 0]
        if kept.size:
            sizes[k] = np.bincount(kept).max()
    return sizes
