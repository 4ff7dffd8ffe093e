"""Benchmarks: `python -m bench` runs every module here that exposes `main(argv)`."""
