"""The one exception family of Aerobase.

Every error raised on purpose derives from :class:`AerobaseError`, and each
subclass also inherits the matching built-in, so callers that only know
``ValueError`` or ``OSError`` still catch it (rasterio's ``errors.py`` pattern).
Messages name the file, the record and what to do about it.
"""

from __future__ import annotations


class AerobaseError(Exception):
    """Root of every error Aerobase raises deliberately."""


class InputError(AerobaseError, ValueError):
    """Bad user input: an unreadable image, a corrupt log, a malformed GCP file."""


class ConfigError(AerobaseError, ValueError):
    """An invalid configuration: unknown key, wrong type, impossible value."""


class CRSError(InputError):
    """An unknown or unusable coordinate reference system."""


class LogFormatError(InputError):
    """A flight log that cannot be parsed or holds nothing usable."""


class GeoreferenceError(AerobaseError, RuntimeError):
    """The reconstruction cannot be tied to the Earth (no GPS and too few GCPs)."""


class ReconstructionError(AerobaseError, RuntimeError):
    """Structure from motion, densification or gridding could not produce a result."""


class WorkspaceError(AerobaseError, OSError):
    """The output folder is unusable: not writable, or it would overwrite the input."""


class StageError(AerobaseError, RuntimeError):
    """A pipeline stage failed in a way the user can act on."""


class ClusterError(AerobaseError, ConnectionError):
    """The Dask scheduler cannot be reached or has no workers."""
