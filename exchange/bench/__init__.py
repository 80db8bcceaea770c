"""Benchmarks run on purpose (`jinlian bench ...`), never as timed tests."""
