"""Fetchers: where the evidence comes from (an ECS instance, a saved case directory, ...).

Every fetcher has one method, ``fetch(target, **options) -> Evidence``. Whatever it could not get
is inside the Evidence as an ``Artifact`` with ``available=False`` and a reason; only fatal problems
(no such instance, no credentials, nothing reachable) raise ``diagnose.errors.FetchError``.

The registry maps a name to ``"module:Class"`` and imports the module only when the name is asked
for, so choosing ``files`` never pays for the cloud SDK.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from ..errors import UsageError
from ..model import Evidence

_REGISTRY: dict[str, str] = {
    "ecs": "diagnose.fetchers.ecs:EcsFetcher",
    "files": "diagnose.fetchers.files:FilesFetcher",
    "libvirt": "diagnose.fetchers.libvirt:LibvirtFetcher",
    "qemu": "diagnose.fetchers.qemu:QemuFetcher",
}


@runtime_checkable
class Fetcher(Protocol):
    """What the pipeline needs from a source of evidence."""

    name: str

    def fetch(self, target: str, **options: Any) -> Evidence:
        """Get the console log, screenshot and events for ``target`` (an instance id, a path)."""
        ...


def names() -> tuple[str, ...]:
    """The registered fetcher names, sorted."""
    return tuple(sorted(_REGISTRY))


def _load(spec: str) -> type:
    module_name, _, class_name = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def get_fetcher(name: str) -> Fetcher:
    """A ready fetcher for ``name`` ("ecs", "files"); its module is imported now, not before."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UsageError(f"unknown fetcher {name!r}; choose one of: {', '.join(names())}")
    return _load(spec)()


def register(name: str, spec: str) -> None:
    """Add a fetcher ``"module:Class"``. It is imported right away, so a broken one fails here."""
    if ":" not in spec:
        raise ValueError(f"fetcher spec must look like 'module:Class', got {spec!r}")
    cls = _load(spec)
    if not callable(getattr(cls, "fetch", None)):
        raise TypeError(f"{spec} has no fetch() method")
    _REGISTRY[name] = spec
