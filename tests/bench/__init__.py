"""
Tests for the pure parts of the benchmark harness in C{bench/}.
"""
