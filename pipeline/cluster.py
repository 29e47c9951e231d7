"""The one Dask client of a run: an in-process LocalCluster, or a remote scheduler."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
from typing import Any, Iterator

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from models.errors import ClusterError
from pipeline.config import RunConfig

logger = logging.getLogger(__name__)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def quiet_dask_logs() -> None:
    """Dask sets INFO on its own loggers at import; keep the console for Aerobase's progress."""
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "tornado", "bokeh"):
            logging.getLogger(name).setLevel(logging.WARNING)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc() -> bool:
    """Keep freed memory in the process's heap for reuse instead of giving it back at once (glibc only).

    Dask's nanny starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``, so every
    large temporary array the numpy/OpenCV kernels free goes back to the kernel and the next
    one page-faults its memory in again: on the ortho bench (half GSD, 2 worker processes)
    the tile tasks took 10.4 CPU-s instead of 4.9. Arrays up to 32 MiB come from the heap,
    whose top is trimmed only past 256 MiB free (64 MiB kept as padding), so a worker may
    hold up to ~256 MiB of freed memory between tasks (peak memory with and without the
    tuning was not compared). Returns whether it applied.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 256 << 20), (_M_TOP_PAD, 64 << 20)))


class MallocTuning(WorkerPlugin):
    """Runs :func:`tune_malloc` in every worker process, including workers that join later."""

    def setup(self, worker: Any) -> None:
        tune_malloc()


def _prepare_workers(client: Client) -> None:
    client.register_plugin(MallocTuning(), name="aerobase-malloc-tuning")


@contextlib.contextmanager
def dask_client(run: RunConfig, scheduler: str | None = None) -> Iterator[Client]:
    """Yield a connected client; close what we created on exit.

    ``scheduler`` is ``tcp://HOST:PORT`` of a running ``dask scheduler``. Its
    workers must see the output folder at the same path as this machine.
    """
    quiet_dask_logs()
    connect_timeout_s = run.scheduler_timeout_s
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start it with "
                "'dask scheduler' and check the address, or omit --scheduler to run locally"
            ) from exc
        try:
            client.wait_for_workers(1, timeout=connect_timeout_s)
        except (TimeoutError, OSError) as exc:
            client.close()
            raise ClusterError(
                f"the Dask scheduler at {scheduler} has no workers; start some with "
                f"'dask worker {scheduler}'"
            ) from exc
        _prepare_workers(client)
        n = len(client.scheduler_info().get("workers", {}))
        logger.info("connected to Dask scheduler %s with %d workers", scheduler, n)
        try:
            yield client
        finally:
            client.close()
        return

    n_workers = run.workers or default_workers()
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=run.threads_per_worker,
        processes=run.processes,
        memory_limit=run.memory_limit,
        dashboard_address=None,
        # No dashboard; the scheduler's small HTTP server (health, metrics) takes any free
        # port, so two runs on one workstation do not fight over 8787.
        scheduler_kwargs={"dashboard_address": ":0"},
    )
    client = Client(cluster, set_as_default=False)
    _prepare_workers(client)
    logger.info(
        "local Dask cluster: %d workers x %d threads%s", n_workers, run.threads_per_worker,
        ", each worker its own process" if run.processes else " in this process",
    )
    try:
        yield client
    finally:
        client.close()
        cluster.close()
