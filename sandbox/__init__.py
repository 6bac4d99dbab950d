"""Local simulators of the vendor APIs, for tests, the demo and benchmarks."""
