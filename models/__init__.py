"""Model registry and ONNX runners (classification issue).

Models load offline from installed packages, verify their checksum, and warm up at start-up;
nothing downloads weights at run time. The walking skeleton has no model yet: its only detector
is exact hashing, which needs none.
"""
