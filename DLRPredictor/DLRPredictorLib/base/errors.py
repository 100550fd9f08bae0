"""Typed exceptions with messages a radiologist can act on.

Every expected failure raises a subclass of :class:`DLRError`. Messages say what is wrong, with
which case or node, and what to do; the CLI prints them as one line without a traceback.
"""

from __future__ import annotations


class DLRError(Exception):
    """Base class of every expected DLRPredictor error."""


class InputError(DLRError, ValueError):
    """An image, mask, node or value given by the user cannot be used."""


class ImageReadError(InputError):
    """An image or mask file is missing or cannot be read."""


class LesionError(InputError):
    """The lesion (segment, labelmap or mask) is empty, mis-sized or too small."""


class ClinicalValueError(InputError):
    """A clinical value is missing, non-numeric, out of range or unknown to the bundle."""


class ManifestError(InputError):
    """A cohort manifest CSV is malformed (columns, duplicate ids, paths)."""


class ConfigError(InputError):
    """A training configuration or parameter file is invalid."""


class BundleError(DLRError):
    """A model bundle is missing, damaged, tampered with or incompatible."""
