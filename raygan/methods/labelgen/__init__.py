"""Label-to-image synthesis with few pairs: the shared harness (harness.py), the family's config
sections (sections.py) and one file per method (semipaired, oasis, tcr, usis)."""
