"""Benchmarks of Vigil's streaming hot paths (run each as `python -m bench.<name>`)."""
