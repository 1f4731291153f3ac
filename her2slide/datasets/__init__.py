"""The shared real data sets (../shared/data): where they are, and the annotated nuclei read as
IHC-like samples, for training (her2slide.model.training) and for evaluation (her2slide.evaluation)."""
