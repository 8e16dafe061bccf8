"""Data layer: ingest sources, the MEDS dataset builder, the subject store."""
