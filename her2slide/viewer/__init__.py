"""``her2slide view``: a local web viewer to review a scored slide cell by cell and sign it off."""
