"""Small helpers shared by the hardening tests (issue 16): tiny slides and a lock held elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from her2slide.synth.slides import make_synthetic_slide
from her2slide.synth.spec import SlideSpec

#: Score with the classical segmenter: a tiny slide takes ~2 s and torch is not needed.
CLASSICAL = ["--segmenter", "classical"]


def tiny_slide(folder: Path, name: str, score: str = "3+", size_um: float = 450.0, seed: int = 11) -> Path:
    """A synthetic Aperio slide of ``size_um`` square (one 512 µm tile at 450)."""
    spec = SlideSpec(name=name, pattern="homogeneous", score=score, size_um=(size_um, size_um), seed=seed)
    return make_synthetic_slide(spec, folder).svs


def hold_lock_elsewhere(lock_file: Path) -> subprocess.Popen:
    """Another process holding ``lock_file`` the way her2slide does (until it is killed)."""
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from her2slide.outputs.result_folder import holding\n"
            f"with holding(Path({str(lock_file)!r}), Path('x'), 'test'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder
