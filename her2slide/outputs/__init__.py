"""Writers for the per-slide output folder (see DESIGN.md, "Contracts")."""
