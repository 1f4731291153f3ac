"""Cell instances and per-cell membrane measurements, at working resolution.

Two steps with one interface between them:

1. a *segmenter* turns an RGB tile into :class:`CellMaps` — per-pixel evidence for
   nuclei, membranes and tumour epithelium, plus the DAB amount. The classical segmenter
   here derives them from colour deconvolution; the CNN of the model issue will produce
   the same maps. DAB is always measured from the image, never from a model output;
2. :func:`find_cells` and :func:`measure_cells` turn maps into cell instances (seeded
   watershed from tumour nuclei, pulled onto membrane ridges) and measure each cell's
   membrane ring: DAB intensity, completeness around the circumference in angular
   sectors, and whether the stained part is basolateral/lateral.

All per-cell statistics are computed with label arrays (bincount / ufunc.at), never with
a Python loop over cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

from her2slide.config import CellSettings
from her2slide.stain import StainModel, stain_amounts

#: Columns returned by :func:`measure_cells`, in tile pixel coordinates.
CELL_COLUMNS = (
    "cx", "cy", "area_px", "membrane_dab_od", "membrane_dab_od_p90", "stained_dab_od",
    "completeness", "lateral",
)


@dataclass(frozen=True)
class CellMaps:
    """Per-pixel evidence for one tile at working resolution (all float32, same shape)."""

    nucleus: np.ndarray  # probability that a pixel is nuclear, 0–1
    membrane: np.ndarray  # membrane evidence, 0–1 (drives cell boundaries only)
    tumour: np.ndarray  # probability of tumour epithelium, 0–1
    dab: np.ndarray  # DAB amount (OD units); the quantity that is measured
    nuclei: np.ndarray | None = None  # nucleus instances, if the segmenter already has them
    nucleus_props: dict[str, np.ndarray] | None = None  # nucleus_props(nuclei), given only with nuclei


def classical_maps(rgb: np.ndarray, stain: StainModel, settings: CellSettings, mpp: float) -> CellMaps:
    """Maps from colour deconvolution alone: the baseline the CNN has to beat.

    Nuclei are haematoxylin above a per-tile Otsu threshold (clipped to a plausible band:
    real counterstain varies several-fold between labs); membranes are thin DAB lines (white
    top-hat at the membrane's scale); tumour epithelium is where large, round, cohesive
    nuclei are, on tissue.
    """
    amounts = stain_amounts(rgb, stain)
    haem = gaussian(amounts[..., 0], sigma=0.5 / mpp, preserve_range=True)
    dab = amounts[..., 1]
    tissue = gaussian(amounts[..., 0] + amounts[..., 1], sigma=1.0 / mpp, preserve_range=True) > settings.tissue_od
    nucleus_mask = haem > _nucleus_threshold(haem, tissue, settings)
    nuclei = split_nuclei(nucleus_mask, mpp, min_area_px=settings.min_nucleus_um2 / mpp**2 / 2)
    # Thin bright lines survive a white top-hat narrower than a cell; cytoplasmic haze does not.
    ridge = ndi.white_tophat(dab, size=2 * int(round(1.5 / mpp)) + 1)
    membrane = np.clip(ridge / 0.2, 0.0, 1.0).astype(np.float32)
    props = nucleus_props(nuclei)
    tumour = _classical_tumour_map(nuclei, props, settings, mpp) & tissue
    return CellMaps(nucleus_mask.astype(np.float32), membrane, tumour.astype(np.float32), dab.astype(np.float32),
                    nuclei, props)


def _nucleus_threshold(haem: np.ndarray, tissue: np.ndarray, settings: CellSettings) -> float:
    values = haem[tissue]
    if values.size < 1000:
        return settings.nucleus_od_max
    return float(np.clip(threshold_otsu(values), settings.nucleus_od_min, settings.nucleus_od_max))


def _classical_tumour_map(nuclei: np.ndarray, props: dict[str, np.ndarray], settings: CellSettings,
                          mpp: float) -> np.ndarray:
    """Epithelium = discs around nuclei that are tumour-sized, round and cohesive."""
    area_um2 = props["area"] * mpp**2
    keep = (area_um2 >= settings.tumour_min_area_um2) & (area_um2 <= settings.max_nucleus_um2)
    keep &= props["elongation"] <= settings.max_nucleus_elongation
    xy = np.column_stack([props["cx"], props["cy"]])[keep] * mpp
    if len(xy):
        neighbours = cKDTree(xy).query_ball_point(xy, settings.tumour_neighbour_radius_um, return_length=True) - 1
        xy = xy[neighbours >= settings.tumour_min_neighbours]
    seeds = np.zeros(nuclei.shape, dtype=bool)
    cols, rows = np.rint(xy / mpp).astype(int).T
    seeds[np.clip(rows, 0, nuclei.shape[0] - 1), np.clip(cols, 0, nuclei.shape[1] - 1)] = True
    return ndi.distance_transform_edt(~seeds) * mpp <= settings.max_cell_radius_um


def split_nuclei(mask: np.ndarray, mpp: float, min_separation_um: float = 3.0, min_area_px: float = 4) -> np.ndarray:
    """Instance labels of nuclei, touching nuclei split at distance-transform peaks.

    Specks below ``min_area_px`` are dropped first. Peaks come from one maximum filter over
    the whole tile (not a per-object search), so the cost does not depend on object count.
    """
    mask = remove_small_objects(mask, max_size=max(int(min_area_px), 1))
    distance = ndi.distance_transform_edt(mask)
    smooth = gaussian(distance, sigma=1.0, preserve_range=True)
    size = 2 * max(1, int(round(min_separation_um / mpp))) + 1
    peaks = mask & (smooth >= ndi.maximum_filter(smooth, size=size)) & (distance >= 1)
    markers, _ = ndi.label(peaks)
    return watershed(-smooth, markers, mask=mask)


def nuclei_from_centres(nucleus: np.ndarray, centre: np.ndarray, mpp: float, min_area_um2: float = 3.0) -> np.ndarray:
    """Nucleus instance labels from a network's foreground and centre maps.

    ``centre`` is each nucleus's distance to its own edge over its largest such distance, so it
    falls to 0 between two touching nuclei: its cores (above 0.5) are one marker per nucleus, and a
    watershed on it gives each marker its nucleus. Foreground without a core (a small or faint
    nucleus) is a nucleus of its own; specks under ``min_area_um2`` are dropped.
    """
    foreground = nucleus > 0.5
    markers, n = ndi.label(foreground & (centre > 0.5))
    labels = watershed(-centre, markers, mask=foreground)
    orphans, n_orphans = ndi.label(foreground & (labels == 0))
    labels = np.where(orphans > 0, orphans + n, labels)
    area = np.bincount(labels.ravel(), minlength=n + n_orphans + 1)
    small = area * mpp**2 < min_area_um2
    small[0] = True
    labels[small[labels]] = 0
    return labels.astype(np.int32)


def label_centroids(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count and centroid (row, column) of every label 0..n, indexed by label, by bincount."""
    flat = labels.ravel()
    rows, cols = np.indices(labels.shape)
    area = np.bincount(flat, minlength=n + 1).astype(np.float64)
    safe = np.maximum(area, 1)
    cy = np.bincount(flat, rows.ravel().astype(np.float64), minlength=n + 1) / safe
    cx = np.bincount(flat, cols.ravel().astype(np.float64), minlength=n + 1) / safe
    return area, cy, cx


def nucleus_props(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Area, centroid and elongation (major/minor axis) per label 1..max, from image moments."""
    n = int(labels.max())
    flat = labels.ravel()
    area, cy, cx = label_centroids(labels, n)
    safe = np.maximum(area, 1)
    rows, cols = np.indices(labels.shape)
    dr, dc = rows.ravel() - cy[flat], cols.ravel() - cx[flat]
    mu_rr = np.bincount(flat, dr * dr, n + 1) / safe + 1 / 12
    mu_cc = np.bincount(flat, dc * dc, n + 1) / safe + 1 / 12
    mu_rc = np.bincount(flat, dr * dc, n + 1) / safe
    half_trace, root = (mu_rr + mu_cc) / 2, np.sqrt(((mu_rr - mu_cc) / 2) ** 2 + mu_rc**2)
    elongation = np.sqrt((half_trace + root) / np.maximum(half_trace - root, 1e-6))
    present = area[1:] > 0
    return {"label": np.arange(1, n + 1)[present], "area": area[1:][present], "cy": cy[1:][present],
            "cx": cx[1:][present], "elongation": elongation[1:][present]}


def nucleus_instances(maps: CellMaps, mpp: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Nucleus instance labels of a tile and their properties (:func:`nucleus_props`).

    The segmenter's own instances when it has them; otherwise the nucleus map split at
    distance-transform peaks. Every nucleus the pipeline considers comes from here, so an
    evaluation of nucleus detection calls this too.
    """
    nuclei = maps.nuclei if maps.nuclei is not None else split_nuclei(maps.nucleus > 0.5, mpp)
    props = maps.nucleus_props if maps.nucleus_props is not None else nucleus_props(nuclei)
    return nuclei, props


def find_cells(maps: CellMaps, settings: CellSettings, mpp: float) -> np.ndarray:
    """Tumour-cell instance labels (0 = not a tumour cell), by seeded watershed.

    Seeds are nuclei inside tumour epithelium; every other nucleus and everything
    further than ``max_cell_radius_um`` from a tumour nucleus seeds a shared background
    basin, so cells stop at the epithelium edge instead of spilling into stroma. The
    elevation is distance from the nucleus plus weighted membrane evidence: basins meet
    on stained membranes where there are any, and half-way between nuclei where there
    are none (unstained cells still get an outline).
    """
    nuclei, props = nucleus_instances(maps, mpp)
    area_um2 = props["area"] * mpp**2
    rows = np.clip(np.rint(props["cy"]).astype(int), 0, nuclei.shape[0] - 1)
    cols = np.clip(np.rint(props["cx"]).astype(int), 0, nuclei.shape[1] - 1)
    is_tumour = (
        (area_um2 >= settings.min_nucleus_um2) & (area_um2 <= settings.max_nucleus_um2)
        & (props["elongation"] <= settings.max_nucleus_elongation)
        & (maps.tumour[rows, cols] >= 0.5)
    )
    # Relabel: tumour nuclei 1..n, background basin n+1.
    lookup = np.zeros(nuclei.max() + 1, dtype=np.int32)
    n = int(is_tumour.sum())
    background = n + 1
    lookup[props["label"]] = np.where(is_tumour, 0, background)
    lookup[props["label"][is_tumour]] = np.arange(1, n + 1)
    markers = lookup[nuclei]
    tumour_seeds = markers > 0
    tumour_seeds &= markers != background
    distance_um = ndi.distance_transform_edt(~tumour_seeds) * mpp
    outside = (distance_um > settings.max_cell_radius_um) | (maps.tumour < 0.5)
    markers[outside & (markers == 0)] = background
    if n == 0:
        return np.zeros(nuclei.shape, dtype=np.int32)
    elevation = distance_um / settings.max_cell_radius_um + settings.membrane_weight * maps.membrane
    # Flood only where a tumour cell can reach (unlabelled pixels, tumour seeds) and the rim of
    # background markers around it: the rest is background already, and background markers
    # further out have no unlabelled neighbour. The labels are those of flooding everything but
    # for a few pixels where equal elevations meet (scikit-image breaks ties between markers by
    # heap order; tested), at a third of the cost on tiles that are mostly stroma or glass.
    reach = ndi.binary_dilation(markers != background, structure=np.ones((3, 3), dtype=bool))
    labels = watershed(elevation, markers, mask=reach)
    labels[labels == background] = 0
    return labels.astype(np.int32)


def measure_cells(labels: np.ndarray, dab: np.ndarray, settings: CellSettings, mpp: float,
                  faint_od: float) -> dict[str, np.ndarray]:
    """Per-cell membrane statistics for labels 1..max (rows in label order).

    The membrane ring is the band of each cell within ``ring_width_um`` of its outline.
    Around the cell centroid the ring is cut into ``sectors``; each sector's value is its
    peak DAB (the membrane line, robust to a pixel of misplaced outline). A sector is
    stained when its peak reaches ``faint_od``; single-sector gaps are closed and
    single-sector specks removed before counting, and stain that belongs to the
    neighbour across the boundary is handed back (see :func:`_attribute_to_neighbours`).
    Completeness is the stained share of the sectors that exist; the stained part is
    called basolateral/lateral when it covers at least ``lateral_min_fraction`` in at
    most two arcs.
    """
    n = int(labels.max())
    if n == 0:
        return {name: np.zeros(0) for name in CELL_COLUMNS}
    counts, cy, cx = label_centroids(labels, n)

    width = max(1, int(round(settings.ring_width_um / mpp)))
    size = 2 * width + 1
    in_ring = (labels > 0) & (ndi.minimum_filter(labels, size=size) != ndi.maximum_filter(labels, size=size))
    ring_rows, ring_cols = np.nonzero(in_ring)
    ring_label = labels[ring_rows, ring_cols]
    ring_dab = dab[ring_rows, ring_cols].astype(np.float64)
    across = _label_across(labels, ring_rows, ring_cols, width)
    angle = np.arctan2(ring_rows - cy[ring_label], ring_cols - cx[ring_label])
    sectors = settings.sectors
    sector = np.minimum(((angle + np.pi) / (2 * np.pi) * sectors).astype(np.int64), sectors - 1)
    key = ring_label.astype(np.int64) * sectors + sector

    # Peak DAB per (cell, sector), and the neighbour across the boundary at that peak.
    order = np.lexsort((ring_dab, key))
    last = np.r_[key[order][1:] != key[order][:-1], True]
    top = order[last]
    peak = np.full((n + 1) * sectors, -np.inf)
    peak[key[top]] = ring_dab[top]
    neighbour = np.zeros((n + 1) * sectors, dtype=np.int64)
    neighbour[key[top]] = across[top]
    peak, neighbour = peak.reshape(n + 1, sectors), neighbour.reshape(n + 1, sectors)
    present = np.isfinite(peak)
    stained = _clean_circular(present & (peak >= faint_od), present)
    stained = _attribute_to_neighbours(stained, present, peak, neighbour, settings)

    n_present = np.maximum(present.sum(axis=1), 1)
    n_stained = stained.sum(axis=1)
    completeness = n_stained / n_present
    peak_or_zero = np.where(present, peak, 0.0)
    membrane_mean = peak_or_zero.sum(axis=1) / n_present
    stained_mean = np.where(n_stained > 0, np.where(stained, peak, 0.0).sum(axis=1) / np.maximum(n_stained, 1),
                            membrane_mean)
    arcs = (stained & ~np.roll(stained, 1, axis=1)).sum(axis=1)
    lateral = (completeness >= settings.lateral_min_fraction) & (arcs >= 1) & (arcs <= 2)

    result = {
        "cx": cx, "cy": cy, "area_px": counts,
        "membrane_dab_od": membrane_mean, "membrane_dab_od_p90": _grouped_percentile(ring_label, ring_dab, n, 90.0),
        "stained_dab_od": stained_mean, "completeness": completeness, "lateral": lateral,
    }
    return {name: values[1:] for name, values in result.items()}


def _label_across(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, width: int) -> np.ndarray:
    """The nearest other cell within ``width`` pixels of each ring pixel (0 when none).

    Nearest by chessboard distance, so the neighbour is the cell across the boundary at
    that point, not one further along it.
    """
    height, width_px = labels.shape
    own = labels[rows, cols]
    found = np.zeros(len(rows), dtype=np.int64)
    for radius in range(1, width + 1):
        for dr in range(-radius, radius + 1):
            for dc in range(-radius, radius + 1):
                if max(abs(dr), abs(dc)) != radius:
                    continue
                r = np.clip(rows + dr, 0, height - 1)
                c = np.clip(cols + dc, 0, width_px - 1)
                other = labels[r, c]
                take = (found == 0) & (other != own) & (other > 0)
                found[take] = other[take]
    return found


def _attribute_to_neighbours(stained: np.ndarray, present: np.ndarray, peak: np.ndarray, neighbour: np.ndarray,
                             settings: CellSettings) -> np.ndarray:
    """Hand stained sectors back to the neighbour whose membrane they are.

    At working resolution two touching cells' membranes are one blurred line, so a
    sector can look stained because the cell next door is. The tie-breaker is the cells
    themselves: a stained sector of cell A that borders cell B is B's stain when B is
    clearly more completely stained than A (by ``attribution_margin``) and B's own
    stained sectors are at least ``own_stain_ratio`` as intense as this one. In a mosaic
    the positive cell is stained all round and its negative neighbour only where it
    touches it, which is exactly this case; two stained neighbours both keep their stain.
    """
    n_present = np.maximum(present.sum(axis=1), 1)
    completeness = stained.sum(axis=1) / n_present
    stained_peak = np.where(stained, peak, 0.0).sum(axis=1) / np.maximum(stained.sum(axis=1), 1)
    theirs = (
        stained & (neighbour > 0)
        & (completeness[neighbour] >= completeness[:, None] + settings.attribution_margin)
        & (stained_peak[neighbour] >= settings.own_stain_ratio * np.where(stained, peak, 0.0))
    )
    return _clean_circular(stained & ~theirs, present)


def _clean_circular(stained: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Close one-sector gaps, then drop one-sector specks, treating sectors as a circle."""
    left, right = np.roll(stained, 1, axis=1), np.roll(stained, -1, axis=1)
    closed = stained | (left & right & present)
    left, right = np.roll(closed, 1, axis=1), np.roll(closed, -1, axis=1)
    return closed & (left | right)


def _grouped_percentile(groups: np.ndarray, values: np.ndarray, n: int, q: float) -> np.ndarray:
    """q-th percentile (nearest rank) of ``values`` per group 0..n, vectorised by one sort."""
    result = np.zeros(n + 1)
    if len(values) == 0:
        return result
    order = np.lexsort((values, groups))
    sorted_groups, sorted_values = groups[order], values[order]
    counts = np.bincount(sorted_groups, minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    rank = starts[has] + np.floor((counts[has] - 1) * q / 100.0).astype(np.int64)
    result[has] = sorted_values[rank]
    return result
