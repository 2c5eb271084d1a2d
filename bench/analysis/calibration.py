"""Calibration and validation of the step-time model (:mod:`bench.analysis.predict`) on public measured data."""

from __future__ import annotations

from bench.schema import DeviceFile


def validation_report(table: DeviceFile) -> str:
    """The calibration and leave-one-device-out error tables (Markdown)."""
    return f"Validated error: {table.validation}"
