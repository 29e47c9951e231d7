"""The one way Aerobase imports open3d.

The ``open3d-cpu`` wheel links against ``libusb-1.0.so`` without shipping it;
``libusb-package`` supplies the library, which must be loaded (globally) before
``import open3d``. Every module that needs open3d calls :func:`import_open3d`.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from types import ModuleType

# open3d's first import pulls in a large package tree; two Dask worker threads importing it at
# once have tripped CPython 3.11's parser (under pytest's assertion rewriting), so one at a time.
_IMPORT_LOCK = threading.Lock()


def import_open3d() -> ModuleType:
    """Load libusb, then import and return the ``open3d`` module (once, thread-safe)."""
    with _IMPORT_LOCK:
        return _import_open3d()


@functools.lru_cache(maxsize=1)
def _import_open3d() -> ModuleType:
    import libusb_package

    lib = libusb_package.get_library_path()
    if lib is not None:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    import open3d

    open3d.utility.set_verbosity_level(open3d.utility.VerbosityLevel.Error)
    return open3d
