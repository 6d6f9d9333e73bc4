"""Benchmarks and measurements; nothing in src/ imports from here."""
