"""Real-VM lab: boots real Debian kernels in QEMU (TCG) and records failure fixtures.

Not part of the installed ``diagnose`` package. Entry point: ``python -m lab``.
"""
