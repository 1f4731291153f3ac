"""The QC section of review.html (verdict, what to check, area excluded per reason, cells
removed, flags) and :func:`qc_checks`, the sentences that the viewer also shows beside the score.
"""

from __future__ import annotations

from typing import Any

from her2slide.outputs.inline_html import format_value, escape

__all__ = ["qc_checks"]


def qc_checks(qc: Any) -> list[str]:
    """What QC asks the pathologist to check on a slide it did not refuse: each flag's sentence
    (report.json ``qc.warnings``, her2slide.qc.verdict). Shown beside the score on the review
    page and in the viewer, so a flagged score never looks like a clean one."""
    warnings = qc.get("warnings") if isinstance(qc, dict) else None
    return [str(w) for w in warnings] if isinstance(warnings, list) else []


def qc_section(qc: Any) -> str:
    """QC: the verdict and its reasons, what to check, the area excluded per reason, the cells
    removed, the flags.

    Takes report.json's dict (her2slide.qc) or an older bare list of flags.
    """
    qc = qc if isinstance(qc, dict) else {"flags": qc or []}
    flags = qc.get("flags") or []
    if isinstance(flags, dict):
        flags = [f"{k}: {v}" for k, v in flags.items()]
    checks = qc_checks(qc)
    parts = []
    if qc.get("verdict") is not None:
        parts.append(f"<p>verdict: <b>{escape(qc['verdict'])}</b>{' with flags' if checks else ''}</p>")
    parts.extend(f'<p class="flag">{escape(reason)}</p>' for reason in qc.get("reasons") or [])
    if checks:
        parts.append("<h3>What to check</h3><ul>" + "".join(f"<li>{escape(c)}</li>" for c in checks) + "</ul>")
    parts.append(_qc_exclusions(qc))
    if flags:
        parts.append("".join(f'<span class="flag">{escape(_flag_text(f))}</span>' for f in flags))
    elif not checks:
        parts.append('<p class="ok">no QC flags</p>')
    return "".join(parts)


def qc_summary(qc: Any) -> str:
    """One line for the page's header: how much tissue QC took out, and why."""
    if not isinstance(qc, dict) or "excluded" not in qc:
        return ""
    assessed = qc.get("assessed_area_mm2") or 0
    excluded = {k: v for k, v in (qc.get("excluded") or {}).items() if isinstance(v, (int, float)) and v > 0}
    removed = (qc.get("cells_removed") or {}).get("qc", 0)
    if not excluded or not assessed:
        return "QC: no tissue excluded"
    parts = ", ".join(f"{reason} {100 * area / assessed:.1f}%" for reason, area in
                      sorted(excluded.items(), key=lambda item: -item[1]))
    return (f"QC: {100 * sum(excluded.values()) / assessed:.1f}% of the assessed tissue excluded ({parts}); "
            f"{removed:,} cells removed")


def _qc_exclusions(qc: dict) -> str:
    """Area excluded per reason (mm² and share of the assessed tissue) and the cells that removed."""
    excluded = {k: v for k, v in (qc.get("excluded") or {}).items() if isinstance(v, (int, float)) and v > 0}
    assessed = qc.get("assessed_area_mm2")
    removed = qc.get("cells_removed") or {}
    if not excluded and not any(removed.values()):
        return '<p class="ok">no tissue excluded</p>' if "excluded" in qc else ""

    def share(area: float) -> str:
        return f"{100 * area / assessed:.1f}%" if isinstance(assessed, (int, float)) and assessed > 0 else ""

    rows = "".join(f'<tr><td>{escape(reason)}</td><td class="num">{area:.3f}</td>'
                   f'<td class="num">{share(area)}</td></tr>'
                   for reason, area in sorted(excluded.items(), key=lambda item: -item[1]))
    total = sum(excluded.values())
    lost = ", ".join(f"{n:,} {where}" for where, n in (("in excluded blocks", removed.get("qc", 0)),
                                                      ("outside the ROI", removed.get("roi", 0))) if n)
    return (f"<p>Excluded from scoring: <b>{share(total) or f'{total:.3f} mm²'}</b> of the assessed tissue"
            f"{f'; cells removed: {lost}' if lost else ''}.</p>"
            f'<table><tr><th>reason</th><th>mm²</th><th>share</th></tr>{rows}'
            f'<tr><th>total</th><td class="num">{total:.3f}</td><td class="num">{share(total)}</td></tr></table>')


def _flag_text(flag: Any) -> str:
    if isinstance(flag, dict):
        name = flag.get("name") or flag.get("flag") or flag.get("code") or ""
        rest = ", ".join(f"{k}: {format_value(v)}" for k, v in flag.items() if k not in ("name", "flag", "code"))
        return f"{name} ({rest})" if name and rest else name or rest
    return str(flag)
