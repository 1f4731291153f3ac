"""Evaluation on real data: matching detections to truth, stain invariance on the real cores, and
real annotated nuclei rendered as IHC fields (her2slide.datasets), judged through the scoring path."""
