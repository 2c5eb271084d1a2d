"""Analysis of measured or counted series: two-term scaling fits and verdicts, series grouping."""
