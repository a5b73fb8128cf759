"""Vigil's wire contract in code: topics, event models, codecs, dead-letters and signing.

This package is the bottom layer: it imports nothing else from Vigil, so forums and downstream
consumers can use it (e.g. `streams.signing.verify`) without pulling in the pipeline.
"""
