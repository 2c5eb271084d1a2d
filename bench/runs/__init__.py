"""Runs: presets and their grid of cases, the sweep loop, the records file, comparing two runs."""
