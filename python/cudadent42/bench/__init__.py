"""Benchmarks against the anchors, shared by the CLI and benchmarks/ scripts."""
