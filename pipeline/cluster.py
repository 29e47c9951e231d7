"""The one Dask client of a run: an in-process LocalCluster, or a remote scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from distributed import Client, LocalCluster

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
        processes=False,
        memory_limit=run.memory_limit,
        dashboard_address=None,
        # No dashboard; the scheduler's small HTTP server (health, metrics) takes any free
        # port, so two runs on one workstation do not fight over 8787.
        scheduler_kwargs={"dashboard_address": ":0"},
    )
    client = Client(cluster, set_as_default=False)
    logger.info("in-process Dask cluster: %d workers x %d threads", n_workers, run.threads_per_worker)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
