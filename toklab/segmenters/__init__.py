"""Segmenters: every way of cutting text into tokens, behind one interface (see base.py).

Names are resolved on first use (PEP 562), so that importing a light module of this package
(kinds.py, options.py) does not load the registry and every kind."""

from importlib import import_module as _import_module

_HOMES = {
    "EOT": "toklab.segmenters.base",
    "Segmenter": "toklab.segmenters.base",
    "available_kinds": "toklab.segmenters.registry",
    "get_segmenter": "toklab.segmenters.registry",
    "get_segmenters": "toklab.segmenters.registry",
    "load_segmenter": "toklab.segmenters.registry",
    "parse_spec": "toklab.segmenters.registry",
    "segmenter_class": "toklab.segmenters.registry",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):  # noqa: ANN202
    if name in _HOMES:
        value = getattr(_import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'toklab.segmenters' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
