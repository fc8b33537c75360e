"""Exceptions: one base class, one line each, naming the file and the fix."""

from __future__ import annotations

__all__ = [
    "MalvisionError",
    "InputError",
    "EmptyFileError",
    "ConversionError",
    "NotASampleError",
    "DatasetError",
    "CheckpointError",
    "ModelError",
]


class MalvisionError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits non-zero."""


class InputError(MalvisionError):
    """A file cannot be read: missing, empty, a directory, unreadable or too large."""


class EmptyFileError(InputError):
    """A file of no bytes: an error where a file must be read, a verdict ("empty file") in a scan."""


class ConversionError(MalvisionError):
    """Bytes cannot become the requested image or sequence."""


class NotASampleError(ConversionError):
    """Input that is no sample at all (a list of sample ids shipped beside the samples): a data build
    leaves it out and says so, without counting it as a failure."""


class DatasetError(MalvisionError):
    """A dataset is malformed: missing labels, bad layout, corrupt entries."""


class CheckpointError(MalvisionError):
    """A checkpoint is missing, truncated, unsafe or of another model."""


class ModelError(MalvisionError):
    """An unknown model name or bad model arguments."""
