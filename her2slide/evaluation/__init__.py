"""Evaluation on real data: matching detections to truth, the shared real data sets, and the
renderings of real nuclei that issue 14's detector is judged on."""
