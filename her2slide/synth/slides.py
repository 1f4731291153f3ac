"""Synthetic HER2 slides with exact ground truth: specs, staining patterns, truth tables, suites.

A slide is a :class:`SlideSpec` (pattern, target score, fraction, size, seed, architecture,
look). Each tumour cell gets a *phenotype* — a membrane intensity (none / faint / weak–moderate /
intense) and a pattern (complete ring, partial arcs, basolateral/lateral U) — from a spatial class
map:

* ``homogeneous``: a fixed mixture per score, in exact counts, spread at random over the tumour;
* ``focal``: one or more contiguous clusters of 3+ (or 2+) cells, holding ``fraction`` of the
  tumour cells, inside a 0 or 1+ tumour;
* ``mosaic``: positive and negative cells mixed cell by cell, ``fraction`` positive.

The truth is what was drawn: designed membrane OD, exact stained fraction of the circumference
(angle around the rendered cell's centroid), and the classes and slide scores the project's own
rule engine (``her2slide.scoring``) gives them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .layout import KINDS, LayoutParams, make_layout
from .artefacts import Artefact, artefact_polygon_um, with_artefacts
from .families import family_named
from .render import Look, Membranes, Scene, cell_geometry, render_region
from .svs import write_svs

__all__ = ["PHENOTYPES", "MIXTURES", "MembraneDesign", "SlideSpec", "SyntheticSlide", "build_scene",
           "make_synthetic_slide", "make_suite", "suite_specs"]

Score = Literal["0", "1+", "2+", "3+"]
Pattern = Literal["homogeneous", "focal", "mosaic"]

#: phenotype -> (intensity 0..3, membrane pattern)
PHENOTYPES: dict[str, tuple[int, str]] = {
    "none": (0, "none"),
    "faint_partial": (1, "partial"),
    "faint_complete": (1, "complete"),
    "moderate_partial": (2, "partial"),
    "moderate_lateral": (2, "lateral"),
    "moderate_complete": (2, "complete"),
    "intense_partial": (3, "partial"),
    "intense_lateral": (3, "lateral"),
    "intense_complete": (3, "complete"),
}

#: Homogeneous class mixtures per breast score, chosen far from every 10 % / 1 % boundary and so
#: that the score does not depend on the rule engine's open choices (where faint complete or
#: moderate lateral cells go).
MIXTURES: dict[str, dict[str, float]] = {
    "0": {"none": 0.94, "faint_partial": 0.06},
    "1+": {"none": 0.40, "faint_partial": 0.55, "faint_complete": 0.05},
    "2+": {"none": 0.20, "faint_partial": 0.25, "moderate_lateral": 0.10, "moderate_complete": 0.45},
    "3+": {"none": 0.10, "faint_partial": 0.10, "moderate_complete": 0.15, "intense_lateral": 0.10,
           "intense_complete": 0.55},
}

POSITIVE = {"3+": "intense_complete", "2+": "moderate_complete"}
VERSION = "1"


class MembraneDesign(BaseModel):
    """Membrane OD bands (drawn well inside the rule engine's classes) and pattern geometry."""

    model_config = ConfigDict(extra="forbid")

    od_faint: tuple[float, float] = (0.14, 0.24)
    od_moderate: tuple[float, float] = (0.38, 0.52)
    od_intense: tuple[float, float] = (0.75, 1.10)
    partial_fraction: tuple[float, float] = (0.25, 0.65)  # total of 1-3 arcs
    lateral_fraction: tuple[float, float] = (0.55, 0.75)  # one contiguous U, open to the apex


class SlideSpec(BaseModel):
    """What to generate. ``score``: the target breast score of a homogeneous slide, or the score of
    the negative background of a focal/mosaic slide ("0" or "1+"). ``fraction``: focal cluster
    share of tumour cells, or mosaic positive fraction. ``positive``: class of focal/mosaic
    positive cells."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    pattern: Pattern = "homogeneous"
    score: Score = "2+"
    fraction: float = Field(0.2, ge=0.0, le=1.0)
    positive: Literal["2+", "3+"] = "3+"
    clusters: int = Field(1, ge=1, le=20)
    mixture: dict[str, float] | None = None  # overrides MIXTURES[score] (homogeneous/background)
    size_um: tuple[float, float] = (1000.0, 1000.0)  # width, height
    mpp: float = 0.25
    seed: int = 0
    full_field: bool = False  # tissue covers the whole field, no glass (training tiles)
    layout: LayoutParams = Field(default_factory=LayoutParams)
    membrane: MembraneDesign = Field(default_factory=MembraneDesign)
    look: Look = Field(default_factory=Look)
    artefacts: list[Artefact] = Field(default_factory=list)  # blur / fold / ink painted over the render (QC tests)
    family: str | None = None  # style family the layout and look were drawn from (a label; see families.py)

    @model_validator(mode="after")
    def _check(self) -> "SlideSpec":
        if self.pattern != "homogeneous" and self.score not in ("0", "1+") and self.mixture is None:
            raise ValueError(f"a {self.pattern} slide needs a negative background: score '0' or '1+', "
                             f"got {self.score!r}")
        if self.mixture is not None:
            bad = set(self.mixture) - set(PHENOTYPES)
            if bad or sum(self.mixture.values()) <= 0:
                raise ValueError(f"mixture keys must be among {sorted(PHENOTYPES)} with a positive sum")
        if min(self.size_um) < 20:
            raise ValueError("size_um must be at least 20 µm each way")
        if self.family is not None:
            family_named(self.family)
        return self

    @property
    def slide_name(self) -> str:
        if self.name:
            return self.name
        tag = {"homogeneous": f"hom{self.score}", "focal": f"focal{self.score}-{self.positive}x{self.fraction:g}",
               "mosaic": f"mosaic{self.score}-{self.positive}x{self.fraction:g}"}[self.pattern]
        return f"synth-{tag.replace('+', 'p')}-s{self.seed}"


@dataclass(frozen=True)
class SyntheticSlide:
    """Paths and headline truth of one generated slide."""

    name: str
    svs: Path
    truth_parquet: Path
    truth_json: Path
    score: str
    status: str
    category: str
    n_cells: int
    seconds: float


# ---------------------------------------------------------------- class maps


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


def _phenotypes(spec: SlideSpec, rng: np.random.Generator, x: np.ndarray,
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


def _membranes(spec: SlideSpec, rng: np.random.Generator, pheno: np.ndarray, apical: np.ndarray,
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


# ---------------------------------------------------------------- scene and truth


def build_scene(spec: SlideSpec, *, block: int = 2048) -> tuple[Scene, dict[str, np.ndarray]]:
    """The renderable scene of a spec and its per-cell truth columns (deterministic for the seed).

    Cell centroids come from an exact pass over the label image (block by block); cells that own
    no pixel are dropped before anything is drawn, so ``cell_id`` = instance label - 1.
    """
    ss = np.random.SeedSequence(spec.seed)
    s_layout, s_class, s_membrane = ss.spawn(3)
    layout = make_layout(spec.size_um[0], spec.size_um[1], s_layout, spec.layout, tissue_everywhere=spec.full_field)
    shape = (int(round(spec.size_um[1] / spec.mpp)), int(round(spec.size_um[0] / spec.mpp)))
    count, cx, cy = cell_geometry(layout, spec.mpp, shape, block)
    keep = count > 0
    if not keep.all():
        c = layout.cells
        layout = replace(layout, cells=type(c)(**{f: getattr(c, f)[keep] for f in c.__dataclass_fields__}))
        count, cx, cy = count[keep], cx[keep], cy[keep]
    if len(count) == 0:
        raise ValueError(f"slide {spec.slide_name} has no tumour cells: make it larger")
    pheno, region = _phenotypes(spec, np.random.default_rng(s_class), cx * spec.mpp, cy * spec.mpp)
    membranes, intensity, comp, lateral = _membranes(spec, np.random.default_rng(s_membrane), pheno,
                                                     layout.cells.apical, cx, cy)
    scene = Scene(layout, membranes, spec.look, spec.mpp, spec.seed)
    cells = {
        "cell_id": np.arange(len(cx), dtype=np.int32),
        "x": cx, "y": cy,
        "x_um": cx * spec.mpp, "y_um": cy * spec.mpp,
        "area_um2": count * spec.mpp**2,
        "intensity": intensity,
        "membrane_dab_od": membranes.od,
        "completeness": comp,
        "lateral": lateral,
        "phenotype": pheno.astype(str),
        "region": region.astype(str),
        "architecture": np.array(KINDS)[layout.cells.kind],
    }
    return scene, cells


def _classify(cells: dict[str, np.ndarray]) -> dict[str, Any]:
    """Cell classes and slide scores from the project's rule engine (default rules)."""
    from ..scoring import CELL_CLASSES, ScoringRules, classify_cells, score_slide

    rules = ScoringRules()
    out: dict[str, Any] = {}
    for crit in ("breast", "gastric-resection"):
        codes = classify_cells(cells["membrane_dab_od"], cells["completeness"], cells["lateral"], rules, crit)
        out[crit] = (np.array(CELL_CLASSES)[codes], score_slide(codes, crit, rules))
    return out


def _write_truth(spec: SlideSpec, scene: Scene, cells: dict[str, np.ndarray], scores: dict[str, Any],
                 out: Path, name: str, seconds: float, n_levels: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = dict(cells)
    table["cell_class"] = scores["breast"][0]
    table["cell_class_gastric"] = scores["gastric-resection"][0]
    order = ["cell_id", "x", "y", "x_um", "y_um", "area_um2", "intensity", "membrane_dab_od", "completeness",
             "lateral", "cell_class", "region", "phenotype", "architecture", "cell_class_gastric"]
    pq_path, js_path = out / f"{name}.truth.parquet", out / f"{name}.truth.json"
    tmp = pq_path.with_name(pq_path.name + ".partial")
    pq.write_table(pa.table({k: table[k] for k in order}), tmp)
    os.replace(tmp, pq_path)

    breast = scores["breast"][1].to_dict()
    n = len(cells["cell_id"])
    classes, n_class = np.unique(scores["breast"][0], return_counts=True)
    phen, n_phen = np.unique(cells["phenotype"], return_counts=True)
    nuc = scene.layout.nuclei
    h, w = scene.shape
    truth = {
        "name": name,
        "svs": f"{name}.svs",
        "pattern": spec.pattern,
        "score": breast["score"], "status": breast["status"], "category": breast["category"],
        "percent": breast["percent"],
        "breast": breast,
        "gastric_resection": scores["gastric-resection"][1].to_dict(),
        "cluster_share": float(np.mean(cells["region"] == "cluster")) if spec.pattern == "focal" else 0.0,
        "positive_fraction": float(np.mean(cells["region"] != "background")),
        "counts": {
            "tumour_cells": n,
            "stroma_nuclei": int((nuc.kind == 1).sum()),
            "lymphocytes": int((nuc.kind == 2).sum()),
            "classes": {str(k): int(v) for k, v in zip(classes, n_class)},
            "phenotypes": {str(k): int(v) for k, v in zip(phen, n_phen)},
            "tumour_shapes": {k: int((scene.layout.shapes.kind == i).sum()) for i, k in enumerate(KINDS)},
        },
        "mpp": spec.mpp,
        "width_px": w, "height_px": h,
        "width_um": spec.size_um[0], "height_um": spec.size_um[1],
        "levels": n_levels,
        "spec": spec.model_dump(mode="json"),
        "artefacts": [{"kind": a.kind, "polygon_um": artefact_polygon_um(a),
                       "polygon_px": (np.asarray(artefact_polygon_um(a)) / spec.mpp).tolist()} for a in spec.artefacts],
        "generator": {"name": "her2slide.synth", "version": VERSION, "seconds": round(seconds, 2)},
    }
    tmp = js_path.with_name(js_path.name + ".partial")
    tmp.write_text(json.dumps(truth, indent=2))
    os.replace(tmp, js_path)
    return pq_path, js_path


def make_synthetic_slide(spec: SlideSpec, out_dir: str | os.PathLike, *, block: int = 2048,
                         progress: bool = False) -> SyntheticSlide:
    """Render ``spec`` to ``<out_dir>/<name>.svs`` with ``.truth.parquet`` and ``.truth.json``."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = spec.slide_name
    scene, cells = build_scene(spec, block=block)
    scores = _classify(cells)

    def report(done: int, total: int) -> None:
        print(f"\r  {name}: {100 * done / total:5.1f}%", end="", file=sys.stderr, flush=True)

    source = with_artefacts(lambda y, x, h, w: render_region(scene, y, x, h, w).rgb, spec.artefacts, spec.mpp,
                            spec.look.white)
    svs_path = write_svs(out / f"{name}.svs", source,
                         scene.shape, spec.mpp, quality=spec.look.jpeg_quality, block=block,
                         extra={"Filename": name, "Synthetic": f"her2slide.synth v{VERSION}"},
                         progress=report if progress else None)
    if progress:
        print(file=sys.stderr)
    import tifffile

    with tifffile.TiffFile(svs_path) as tif:
        n_levels = sum(1 for p in tif.pages if p.is_tiled)
    seconds = time.perf_counter() - t0
    pq_path, js_path = _write_truth(spec, scene, cells, scores, out, name, seconds, n_levels)
    breast = scores["breast"][1]
    return SyntheticSlide(name, svs_path, pq_path, js_path, breast.score, breast.status, breast.category,
                          len(cells["cell_id"]), round(seconds, 2))


# ---------------------------------------------------------------- suites


def suite_specs(n: int = 40, seed: int = 0, family: str | None = None) -> list[SlideSpec]:
    """An evaluation suite: homogeneous 0/1+/2+/3+, focal at several cluster shares and cluster
    counts, mosaic at several fractions, each slide 0.8–1.2 mm square. The first ``n`` of a fixed
    cycle, so every score appears once ``n >= 4`` and every pattern once ``n >= 6`` (n = 10: four
    homogeneous, three focal, three mosaic).

    Without ``family`` the slides have the calibrated look and a random nest/sheet/gland mix (the
    40-slide suite every evaluation uses). With one, the same cycle of class maps and sizes in that
    style family's tissue and look (drawn per slide), named ``<family>NNN``: a held-out-family suite.
    """
    style = None if family is None else family_named(family)
    rng = np.random.default_rng(seed)
    cycle: list[dict[str, Any]] = []
    focal = [(0.05, 1, "0"), (0.2, 1, "1+"), (0.4, 2, "0"), (0.05, 2, "1+"), (0.2, 3, "0"), (0.12, 1, "1+"),
             (0.4, 1, "1+"), (0.2, 2, "0")]
    mosaic = [(0.05, "3+", "0"), (0.15, "3+", "1+"), (0.3, "2+", "0"), (0.5, "3+", "0"), (0.3, "3+", "1+"),
              (0.15, "2+", "0"), (0.5, "2+", "1+"), (0.05, "2+", "1+")]
    hom = ["0", "1+", "2+", "3+"]
    for r in range(max(1, -(-n // 10))):
        block = [dict(pattern="homogeneous", score=s) for s in hom]
        f = focal[(3 * r) % len(focal):] + focal[: (3 * r) % len(focal)]
        m = mosaic[(3 * r) % len(mosaic):] + mosaic[: (3 * r) % len(mosaic)]
        block[2:2] = [dict(pattern="focal", fraction=a, clusters=b, score=c) for a, b, c in f[:3]]
        block += [dict(pattern="mosaic", fraction=a, positive=b, score=c) for a, b, c in m[:3]]
        cycle += block
    specs = []
    for i, kw in enumerate(cycle[:n]):
        side = float(np.round(rng.uniform(800, 1200), -1))
        arch = rng.dirichlet([3, 2, 2])
        size = (side, float(np.round(side * rng.uniform(0.9, 1.1), -1)))
        if style is None:
            specs.append(SlideSpec(name=f"suite{i:03d}", size_um=size, seed=seed * 1000 + i,
                                   layout=LayoutParams(architecture=dict(zip(KINDS[:3], np.round(arch, 2).tolist()))),
                                   **kw))
            continue
        layout, look = style.draw(np.random.default_rng([seed, i, style.code]))
        specs.append(SlideSpec(name=f"{family}{i:03d}", size_um=size, seed=style.code * 10**6 + seed * 1000 + i,
                               layout=layout, look=look, family=family, **kw))
    return specs


def _progress(i: int, n: int, r: SyntheticSlide) -> None:
    print(f"[{i}/{n}] {r.name}: {r.score} ({r.n_cells} cells, {r.seconds:.1f} s)", flush=True)


def _make_one(args: tuple[SlideSpec, str]) -> SyntheticSlide:
    return make_synthetic_slide(args[0], args[1])


def make_suite(out_dir: str | os.PathLike, n: int = 40, seed: int = 0, *, family: str | None = None,
               workers: int | None = None, verbose: bool = True) -> list[SyntheticSlide]:
    """Generate :func:`suite_specs` (of ``family``, if given) into ``out_dir`` (``workers``
    processes, default ≤ 2) with an ``index.json`` listing every slide and its truth."""
    specs = suite_specs(n, seed, family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(2, os.cpu_count() or 1)
    t0 = time.perf_counter()
    results: list[SyntheticSlide] = []
    jobs = [(s, str(out)) for s in specs]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for r in pool.imap(_make_one, jobs):
                results.append(r)
                if verbose:
                    _progress(len(results), n, r)
    else:
        for job in jobs:
            r = _make_one(job)
            results.append(r)
            if verbose:
                _progress(len(results), n, r)
    index = [{"name": r.name, "svs": r.svs.name, "truth": r.truth_json.name, "score": r.score, "status": r.status,
              "category": r.category, "cells": r.n_cells, "pattern": s.pattern, "fraction": s.fraction}
             for r, s in zip(results, specs)]
    (out / "index.json").write_text(json.dumps({"seed": seed, "family": family, "slides": index}, indent=2))
    if verbose:
        print(f"{n} slides in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return results
