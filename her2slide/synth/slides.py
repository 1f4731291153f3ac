"""Synthetic HER2 slides with exact ground truth: the scene of a spec, its truth tables, the SVS,
and evaluation suites.

A slide is a :class:`~her2slide.synth.spec.SlideSpec`; its tumour cells get their phenotypes and
membranes from :mod:`her2slide.synth.staining`. The truth is what was drawn: designed membrane OD,
exact stained fraction of the circumference (angle around the rendered cell's centroid), and the
classes and slide scores the project's own rule engine (``her2slide.scoring``) gives them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .artefacts import artefact_polygon_um, with_artefacts
from .draw_layout import make_layout
from .families import family_named
from .geometry import cell_geometry
from .layout import KINDS, LayoutParams
from .render import render_region
from .scene import Scene
from .spec import SlideSpec
from .staining import draw_membranes, assign_phenotypes
from .svs import write_svs

__all__ = ["SyntheticSlide", "build_scene", "make_synthetic_slide", "make_suite", "suite_specs"]

VERSION = "1"


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
    pheno, region = assign_phenotypes(spec, np.random.default_rng(s_class), cx * spec.mpp, cy * spec.mpp)
    membranes, intensity, comp, lateral = draw_membranes(spec, np.random.default_rng(s_membrane), pheno,
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
