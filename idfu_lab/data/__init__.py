"""Preference data: loading pairs (:mod:`.pairs`), the pre-training audit (:mod:`.audit`), and building
honest pairs from a model's own samples (:mod:`.curate`)."""
