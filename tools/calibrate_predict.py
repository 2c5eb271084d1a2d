"""Fit the step-time model's constants and write them into the device table.

usage: python tools/calibrate_predict.py

Runs the calibration of ``bench.analysis.calibration`` (timm's RTX 3090 and RTX 4090 tables in
``bench/data/timm/``, the H200 folders ``results/h200-*``), replaces each device class's constants
in ``bench/data/devices.json`` by the fitted ones, with the leave-one-device-out summary as the
table's ``validation``, and prints the error tables (``mixerbench predict --validate`` prints the
same tables from the shipped table without writing anything). A few minutes on a 2-core CPU:
every measured case is counted on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import schema
from bench.analysis import calibration, predict

TABLE = Path(__file__).resolve().parents[1] / "bench" / "data" / predict.DEVICES_DATA


def main() -> None:
    table = predict.builtin_table()
    v = calibration.validate(table=table)
    fitted = calibration.calibrated(table, v)
    for c in fitted.classes.values():
        c.check()
    TABLE.write_text(json.dumps(schema.encode(fitted), indent=1) + "\n")
    print(calibration.report(v))
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
