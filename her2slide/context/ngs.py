"""Bulk-sequencing dilution: the HER2 copy number an NGS assay sees in a mixed sample.

DNA from a block mixes tumour cells (a fraction f of them amplified, copy number CN_a; the
rest at CN_u) with non-tumour cells at 2 copies. With tumour purity p the bulk copy number is

    CN_obs = p·(f·CN_a + (1 − f)·CN_u) + (1 − p)·2

so a focal amplification can be diluted below an assay's calling threshold. Closed-form
inverses say what purity (or amplified fraction) a call needs. From a scored slide, f is
estimated as the share of 3+ cells among the tumour cells of a region, an assumption: IHC 3+
stands in for amplification. Purity is never estimated: her2slide counts tumour cells only,
not the stromal and inflammatory nuclei that dilute the DNA. See docs/diagnostic_context.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "NORMAL_CN", "Unreachable", "observed_cn", "log2_ratio", "cn_from_log2", "min_purity",
    "min_amplified_fraction", "amplified_share", "dilution_report",
]

#: Copy number of non-tumour (diploid) cells.
NORMAL_CN = 2.0


class Unreachable(ValueError):
    """No purity or amplified fraction in [0, 1] reaches the threshold: an answer, not a bad input."""


def _fraction(name: str, value: float) -> float:
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie between 0 and 1, got {value:g}")
    return float(value)


def _copies(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a non-negative copy number, got {value:g}")
    return float(value)


def _threshold(value: float) -> float:
    if not (math.isfinite(value) and value > NORMAL_CN):
        raise ValueError(f"an amplification threshold must exceed the normal copy number 2, got {value:g}")
    return float(value)


def observed_cn(purity: float, amplified_fraction: float, cn_amplified: float, cn_unamplified: float = 2.0) -> float:
    """Bulk copy number p·(f·CN_a + (1 − f)·CN_u) + (1 − p)·2."""
    p, f = _fraction("purity", purity), _fraction("amplified fraction", amplified_fraction)
    tumour = f * _copies("CN_a", cn_amplified) + (1.0 - f) * _copies("CN_u", cn_unamplified)
    return p * tumour + (1.0 - p) * NORMAL_CN


def log2_ratio(cn: float) -> float:
    """log2(CN / 2), the value NGS panels report; -inf for zero copies."""
    return math.log2(cn / NORMAL_CN) if cn > 0 else -math.inf


def cn_from_log2(ratio: float) -> float:
    """Copy number from a log2 ratio against a diploid genome: 2·2^ratio."""
    return NORMAL_CN * 2.0 ** ratio


def min_purity(threshold: float, amplified_fraction: float, cn_amplified: float, cn_unamplified: float = 2.0) -> float:
    """Lowest purity p with CN_obs >= threshold: p = (T − 2) / (f·CN_a + (1 − f)·CN_u − 2).

    Raises Unreachable when even pure tumour (p = 1) stays below the threshold.
    """
    t = _threshold(threshold)
    f = _fraction("amplified fraction", amplified_fraction)
    tumour = f * _copies("CN_a", cn_amplified) + (1.0 - f) * _copies("CN_u", cn_unamplified)
    if tumour < t:
        raise Unreachable(f"the tumour cells average {tumour:.3g} copies (f = {f:.3g}, CN_a = {cn_amplified:g}, "
                          f"CN_u = {cn_unamplified:g}), below the threshold {t:g}: no purity reaches it")
    return (t - NORMAL_CN) / (tumour - NORMAL_CN)


def min_amplified_fraction(threshold: float, purity: float, cn_amplified: float, cn_unamplified: float = 2.0) -> float:
    """Lowest amplified fraction f with CN_obs >= threshold at purity p.

    f = ((T − 2)/p + 2 − CN_u) / (CN_a − CN_u), at least 0. Raises Unreachable when f = 1 is
    not enough (CN_a too low for this purity) or CN_a does not exceed CN_u.
    """
    t = _threshold(threshold)
    p = _fraction("purity", purity)
    a, u = _copies("CN_a", cn_amplified), _copies("CN_u", cn_unamplified)
    if observed_cn(p, 0.0, a, u) >= t:
        return 0.0  # the unamplified tumour cells alone reach it (CN_u above the threshold)
    if p == 0.0:
        raise Unreachable("at purity 0 the sample holds no tumour DNA: no amplified fraction reaches the threshold")
    if a <= u:
        raise Unreachable(f"the amplified clone ({a:g} copies) is not above the unamplified one ({u:g})")
    f = ((t - NORMAL_CN) / p + NORMAL_CN - u) / (a - u)
    if f > 1.0:
        raise Unreachable(f"at purity {p:g} even a fully amplified tumour (f = 1) gives CN {observed_cn(p, 1.0, a, u):.3g}, "
                          f"below the threshold {t:g}")
    return f


def amplified_share(classes: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int, int]:
    """Share of 3+ cells among tumour cells (in ``mask``): the estimate of f, and its counts (3+ cells, cells)."""
    labels = np.asarray(classes).astype(str)
    if mask is not None:
        labels = labels[np.asarray(mask, dtype=bool)]
    n = int(labels.size)
    if n == 0:
        raise ValueError("no tumour cells in the region: the amplified fraction cannot be estimated")
    n3 = int(np.count_nonzero(labels == "3+"))
    return n3 / n, n3, n


def _sample(purity: float, fraction: float, cn_a: float, cn_u: float, threshold: float) -> dict[str, Any]:
    cn = observed_cn(purity, fraction, cn_a, cn_u)
    return {"purity": purity, "amplified_fraction": fraction, "cn": round(cn, 4),
            "fold_change": round(cn / NORMAL_CN, 4), "log2_ratio": round(log2_ratio(cn), 4) if cn > 0 else None,
            "amplification_called": cn >= threshold}


def _answer(fn: Any, *args: float) -> dict[str, Any]:
    try:
        return {"value": round(fn(*args), 4), "reason": None}
    except Unreachable as exc:
        return {"value": None, "reason": str(exc)}


def dilution_report(cn_amplified: float, threshold: float, amplified_fraction: float, purity: float | None = None,
                    cn_unamplified: float = 2.0, region: tuple[float, float] | None = None) -> dict[str, Any]:
    """Everything the ``ngs-dilution`` command prints: the sample, the inverses and a verdict.

    ``region`` is (purity, amplified fraction) of a macrodissected region, if one is considered.
    """
    t = _threshold(threshold)
    f = _fraction("amplified fraction", amplified_fraction)
    out: dict[str, Any] = {
        "threshold": {"cn": t, "fold_change": t / NORMAL_CN, "log2_ratio": round(log2_ratio(t), 4)},
        "cn_amplified": cn_amplified, "cn_unamplified": cn_unamplified, "amplified_fraction": f,
        "pure_tumour": _sample(1.0, f, cn_amplified, cn_unamplified, t),
        "min_purity": _answer(min_purity, t, f, cn_amplified, cn_unamplified),
        "sample": None, "min_amplified_fraction": None, "region": None,
    }
    if purity is not None:
        out["sample"] = _sample(_fraction("purity", purity), f, cn_amplified, cn_unamplified, t)
        out["min_amplified_fraction"] = _answer(min_amplified_fraction, t, purity, cn_amplified, cn_unamplified)
    if region is not None:
        out["region"] = _sample(_fraction("region purity", region[0]), _fraction("region amplified fraction", region[1]),
                                cn_amplified, cn_unamplified, t)
    out["verdict"] = _verdict(out)
    return out


def _verdict(out: dict[str, Any]) -> str:
    t, f = out["threshold"]["cn"], out["amplified_fraction"]
    if out["cn_amplified"] < t:
        return (f"the amplified cells themselves ({out['cn_amplified']:g} copies) are below the threshold {t:g}: "
                "no sample from this tumour is called amplified")
    need = out["min_purity"]
    if need["value"] is None:
        return (f"with {100 * f:.1f}% of tumour cells amplified, even pure tumour averages "
                f"{out['pure_tumour']['cn']:.3g} copies: a bulk call at {t:g} copies misses this amplification at any purity")
    text = f"with {100 * f:.1f}% of tumour cells amplified, a bulk call at {t:g} copies needs purity >= {100 * need['value']:.1f}%"
    sample = out["sample"]
    if sample is not None:
        called = "is called amplified" if sample["amplification_called"] else "is diluted below the threshold"
        text += (f"; at purity {100 * sample['purity']:.0f}% the sample gives CN {sample['cn']:.2f} "
                 f"(log2 ratio {sample['log2_ratio']:+.2f}) and {called}")
    return text
