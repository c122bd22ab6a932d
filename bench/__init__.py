"""Benchmarks that print figures (``make bench`` runs every module here)."""
