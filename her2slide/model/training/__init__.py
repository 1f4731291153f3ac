"""Training the cell network: samples (synthetic tiles, a lab's tiles, QuPath cells, real nuclei),
targets, augmentation, the seeded and resumable loop, and its validation report. Only training
reads slides; the network code one level up never does."""
