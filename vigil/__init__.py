"""Vigil's composition: settings, the faust app, the embedded broker, HTTP, CLI and demo.

`streams/` (contract), `models/` and `agents/` are the parts; this package wires them together
and is the only one that reads the environment.
"""

__version__ = "0.1.0"
