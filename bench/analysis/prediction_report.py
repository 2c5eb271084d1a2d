"""The files ``mixerbench predict --out DIR`` writes: a Markdown table and a plot of predicted throughput."""

from __future__ import annotations

from pathlib import Path

from bench.schema import DeviceFile, StepPrediction

TABLE = "prediction.md"
PLOT = "predicted_throughput.png"


def write(out: Path, predictions: list[StepPrediction], table: DeviceFile) -> list[Path]:
    """Write DIR/prediction.md (and the plot); the paths written."""
    from bench.analysis.predict import predictions_table

    out.mkdir(parents=True, exist_ok=True)
    path = out / TABLE
    path.write_text("# Predicted steps (a prediction, not a measurement)\n\n" + predictions_table(predictions) + "\n")
    return [path]
