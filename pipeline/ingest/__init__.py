"""Ingest kernels: flight summary, ground height, and geotagging images from flight logs by time sync."""
