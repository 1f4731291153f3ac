"""her2slide: whole-slide HER2 immunohistochemistry scoring by the ASCO/CAP rules.

The library API (README, "Python API"): :func:`score_slide` scores one slide into a result folder
exactly as ``her2slide score`` does, :func:`open_slide` reads a slide through the same reader the
pipeline uses, :func:`load_settings` reads a settings YAML. Names load on first use, so importing
the package stays instant.
"""

from her2slide._lazy import lazy_exports

__version__ = "0.1.0"

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "score_slide": "api", "open_slide": "slide.open", "load_settings": "config", "Settings": "config",
    "SlideOutcome": "run.pipeline", "InputError": "errors",
}, globals())
