"""diagnose: why a cloud VM will not boot or answer, from its console log and screenshot."""

__version__ = "0.1.0"
