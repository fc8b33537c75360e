"""Bytes to model input: the one conversion shared by training and scanning (no torch, no writes).

``prepare(source, spec)`` reads a source once and makes the model input for any input kind; the
cache builder, the scanner, explain and the server all call it.
"""

from __future__ import annotations

from malvision.convert.image import byte_plot, nataraj_width, plot_shape, resize_plot
from malvision.convert.opcodes import parse_opcodes
from malvision.convert.prepare import Prepared, model_input, prepare
from malvision.convert.sequence import Vocabulary, byte_sequence, pad_batch
from malvision.convert.spec import ConvertSpec

__all__ = [
    "ConvertSpec",
    "Prepared",
    "Vocabulary",
    "byte_plot",
    "byte_sequence",
    "model_input",
    "nataraj_width",
    "pad_batch",
    "parse_opcodes",
    "plot_shape",
    "prepare",
    "resize_plot",
]
