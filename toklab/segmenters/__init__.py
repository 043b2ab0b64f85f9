"""Segmenters: every way of cutting text into tokens, behind one interface (see base.py)."""

from toklab.segmenters.base import EOT, Segmenter
from toklab.segmenters.registry import available_kinds, get_segmenter, get_segmenters, load_segmenter, parse_spec, segmenter_class

__all__ = ["EOT", "Segmenter", "available_kinds", "get_segmenter",
    "get_segmenters", "load_segmenter", "parse_spec", "segmenter_class"]
