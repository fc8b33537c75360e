"""Why a model said what it said: attributions mapped back to byte offsets, PE sections and features.

- ``attribution``: integrated gradients, gradient, Grad-CAM; occlusion for fitted models.
- ``regions``: attribution profiles as byte ranges, and the PE regions they fall in.
- ``render``: the PNG (byte plot with the heat map, or the top features).
- ``explanation``: ``explain_bytes`` (one read of the file, verdict and attribution) and its files.
"""

from __future__ import annotations

from malvision.explain.attribution import DEFAULT_STEPS, METHODS, attribute, methods_for
from malvision.explain.explanation import Explanation, FeatureShare, explain_bytes, write_explanation
from malvision.explain.regions import ByteRange, Region, pe_regions, row_profile, top_ranges
from malvision.explain.render import render_png

__all__ = [
    "DEFAULT_STEPS",
    "METHODS",
    "ByteRange",
    "Explanation",
    "FeatureShare",
    "Region",
    "attribute",
    "explain_bytes",
    "methods_for",
    "pe_regions",
    "render_png",
    "row_profile",
    "top_ranges",
    "write_explanation",
]
