"""Tools around the library: the command line, comparisons, probes, benchmarks, the demo."""
