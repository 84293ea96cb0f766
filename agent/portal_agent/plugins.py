"""Finding sources and handlers: a built-in name, or a ``module:callable`` import string."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


class PluginError(ValueError):
    """A source or handler name that leads nowhere; the message says why."""


def load(
    spec: str, registry: Mapping[str, Callable[[], Callable[..., Any]]], kind: str
) -> Callable[..., Any]:
    """Return the plug-in named by ``spec``.

    A registry entry is a zero-argument factory. An import string names either a class
    (instantiated without arguments) or any other callable (used as it is).
    """
    if spec in registry:
        return registry[spec]()
    if ":" not in spec:
        raise PluginError(
            f"unknown {kind} {spec!r}: use one of {', '.join(sorted(registry))} or module:callable"
        )
    module_name, _, attr = spec.partition(":")
    try:
        target: object = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot load {kind} {spec!r}: {exc}") from exc
    if isinstance(target, type):
        target = target()
    if not callable(target):
        raise PluginError(f"{kind} {spec!r} is not callable")
    return target
