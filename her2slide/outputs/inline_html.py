"""Small pieces of the self-contained HTML pages (review.html and its cell gallery): escaped text,
numbers as short text, CSS colours, and images inlined as data URIs (no file beside the page).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["data_uri", "escape"]


def data_uri(image: np.ndarray, kind: str) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=kind, **({"quality": 85} if kind == "JPEG" else {"optimize": True}))
    return f"data:image/{kind.lower()};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if np.isfinite(value) else "—"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def css_colour(rgb: Iterable[int]) -> str:
    r, g, b = list(rgb)[:3]
    return f"rgb({int(r)},{int(g)},{int(b)})"


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))
