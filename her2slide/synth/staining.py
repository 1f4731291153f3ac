"""Staining patterns of a synthetic slide: which phenotype each tumour cell gets, from the spec's
spatial class map, and the membrane drawn for it.

* ``homogeneous``: a fixed mixture per score, in exact counts, spread at random over the tumour;
* ``focal``: one or more contiguous clusters of 3+ (or 2+) cells, holding ``fraction`` of the
  tumour cells, inside a 0 or 1+ tumour;
* ``mosaic``: positive and negative cells mixed cell by cell, ``fraction`` positive.

Each membrane is an OD inside its intensity's band, with arcs (complete, partial, lateral) measured
as angles around the rendered cell's centroid, so the truth's completeness is exactly what is drawn.
"""

from __future__ import annotations

import numpy as np

from .scene import Membranes
from .spec import MIXTURES, PHENOTYPES, POSITIVE, SlideSpec


def _exact_counts(mixture: dict[str, float], n: int) -> dict[str, int]:
    """Largest-remainder rounding: counts sum to ``n`` and match the fractions to within one cell."""
    names = list(mixture)
    w = np.array([mixture[k] for k in names], float)
    raw = w / w.sum() * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    return dict(zip(names, counts.tolist()))


def _fill(rng: np.random.Generator, mixture: dict[str, float], n: int) -> np.ndarray:
    labels = np.concatenate([np.full(c, k, dtype=object) for k, c in _exact_counts(mixture, n).items()])
    return rng.permutation(labels)


def _cluster_cells(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, n_cells: int, k: int) -> np.ndarray:
    """Indices of ``n_cells`` cells in ``k`` compact clusters: each grows around a centre (spread
    apart: best of 30 random candidates) by taking its nearest free cells."""
    free = np.ones(len(x), bool)
    centres: list[int] = []
    out: list[np.ndarray] = []
    sizes = np.full(k, n_cells // k) + (np.arange(k) < n_cells % k)
    for size in sizes:
        cand = rng.choice(np.flatnonzero(free), min(30, int(free.sum())), replace=False)
        if centres:
            d = np.min(np.hypot(x[cand, None] - x[centres][None], y[cand, None] - y[centres][None]), axis=1)
            c = int(cand[np.argmax(d)])
        else:
            # away from the tumour's outskirts: the candidate nearest the median cell
            c = int(cand[np.argmin(np.hypot(x[cand] - np.median(x), y[cand] - np.median(y)))])
        centres.append(c)
        idx = np.flatnonzero(free)
        take = idx[np.argsort(np.hypot(x[idx] - x[c], y[idx] - y[c]), kind="stable")[:size]]
        free[take] = False
        out.append(take)
    return np.concatenate(out) if out else np.zeros(0, int)


def assign_phenotypes(spec: SlideSpec, rng: np.random.Generator, x: np.ndarray,
                y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phenotype and region name per cell from the spec's spatial class map."""
    n = len(x)
    background = spec.mixture or MIXTURES[spec.score]
    region = np.full(n, "background", dtype=object)
    if spec.pattern == "homogeneous":
        return _fill(rng, background, n), region
    n_pos = int(round(spec.fraction * n))
    if spec.pattern == "focal":
        pos = _cluster_cells(rng, x, y, n_pos, min(spec.clusters, max(n_pos, 1))) if n_pos else np.zeros(0, int)
        region[pos] = "cluster"
    else:
        pos = rng.choice(n, n_pos, replace=False)
        region[pos] = "positive"
    pheno = np.empty(n, dtype=object)
    pheno[pos] = POSITIVE[spec.positive]
    rest = np.setdiff1d(np.arange(n), pos)
    pheno[rest] = _fill(rng, background, len(rest))
    return pheno, region


def draw_membranes(spec: SlideSpec, rng: np.random.Generator, pheno: np.ndarray, apical: np.ndarray,
               cx: np.ndarray, cy: np.ndarray) -> tuple[Membranes, np.ndarray, np.ndarray, np.ndarray]:
    """Draw each cell's membrane: OD inside its band, arcs, variation along the ring, haze.

    Returns the membranes plus intensity codes, exact completeness and the lateral flag.
    """
    d = spec.membrane
    n = len(pheno)
    intensity = np.array([PHENOTYPES[p][0] for p in pheno], np.int8)
    pattern = np.array([PHENOTYPES[p][1] for p in pheno], dtype=object)
    bands = {1: d.od_faint, 2: d.od_moderate, 3: d.od_intense}
    od = np.zeros(n)
    for level, (lo, hi) in bands.items():
        sel = intensity == level
        od[sel] = rng.uniform(lo, hi, sel.sum())
    start = np.zeros((n, 3))
    length = np.zeros((n, 3))
    comp = np.zeros(n)
    two_pi = 2 * np.pi

    full = pattern == "complete"
    start[full, 0] = rng.uniform(0, two_pi, full.sum())
    length[full, 0] = two_pi
    comp[full] = 1.0

    for i in np.flatnonzero(pattern == "partial"):  # a few hundred cells at most per slide
        total = rng.uniform(*d.partial_fraction)
        k = int(rng.integers(1, 4))
        arcs = total * rng.dirichlet(np.full(k, 2.0))
        gaps = (1.0 - total) * rng.dirichlet(np.full(k, 2.0))
        pos = rng.uniform(0, 1) + np.concatenate([[0.0], np.cumsum(arcs + gaps)[:-1]])
        start[i, :k] = np.mod(pos, 1.0) * two_pi
        length[i, :k] = arcs * two_pi
        comp[i] = arcs.sum()

    lat = pattern == "lateral"
    frac = rng.uniform(*d.lateral_fraction, lat.sum())
    facing = np.where(np.isnan(apical[lat]), rng.uniform(0, two_pi, lat.sum()), apical[lat])
    # the U is centred on the basal side, opposite the apex
    start[lat, 0] = np.mod(facing + np.pi - frac * np.pi, two_pi)
    length[lat, 0] = frac * two_pi
    comp[lat] = frac

    look = spec.look
    ring_k = np.stack([rng.integers(1, 4, n), rng.integers(4, 8, n)], 1)
    ring_amp = look.ring_variation * np.array([0.65, 0.35]) * rng.uniform(0.5, 1.5, (n, 2))
    haze = look.cytoplasm_dab_fraction * od * rng.uniform(0.6, 1.4, n)
    m = Membranes(od=od, arc_start=start, arc_len=length, haze=haze, ring_k=ring_k, ring_amp=ring_amp,
                  ring_phase=rng.uniform(0, two_pi, (n, 2)), cx=cx, cy=cy)
    return m, intensity, comp, lat
