"""Active learning: measures, the dynamic mix, strategies, scoring, the run folder, labels, the loop."""
