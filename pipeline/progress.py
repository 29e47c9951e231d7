"""Progress for stages and Dask tasks, through logging.

``map_tasks`` is the one way stages fan work out: it submits one task per
item with a deterministic key, logs per-task progress as tasks finish, and
returns results in input order; ``iter_tasks`` does the same but hands each
result over as its task finishes. ``submit_tasks`` submits without waiting, to chain
a second step per item or let the client work while the tasks run.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

from dask.base import tokenize
from distributed import Client, Future, as_completed

logger = logging.getLogger(__name__)

R = TypeVar("R")


class ProgressLine:
    """Logs 'label: done/total' at most every ``interval`` seconds and at the end."""

    def __init__(self, label: str, total: int, interval: float = 5.0) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.interval = interval
        self.start = time.monotonic()
        self._last = 0.0

    def step(self, n: int = 1, detail: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.interval:
            self._last = now
            elapsed = now - self.start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            extra = f" ({detail})" if detail else ""
            logger.info(
                "%s: %d/%d tasks done, %.1fs elapsed, ~%.0fs left%s",
                self.label, self.done, self.total, elapsed, eta, extra,
            )


def submit_tasks(
    client: Client,
    fn: Callable[..., Any],
    items: Sequence[Any],
    *args: Any,
    label: str,
    item_names: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[Future]:
    """Submit ``fn(item, *args, **kwargs)`` for every item as Dask tasks without waiting; futures in input order.

    Keys as in :func:`map_tasks`. The futures can be the items of a later :func:`map_tasks`
    call: each item's second step then starts as soon as its first is done, and the client
    is free to do other work while the first steps run.
    """
    names = list(item_names) if item_names is not None else [str(i) for i in range(len(items))]
    shared = tokenize(fn.__module__, fn.__qualname__, args, kwargs)
    futures = []
    for item, name in zip(items, names):
        key = f"{label}-{name}-{tokenize(shared, item)}"
        futures.append(client.submit(fn, item, *args, key=key, pure=False, **kwargs))
    return futures


def iter_tasks(
    client: Client,
    fn: Callable[..., R],
    items: Sequence[Any],
    *args: Any,
    label: str,
    item_names: Sequence[str] | None = None,
    **kwargs: Any,
) -> Iterator[tuple[int, R]]:
    """Run ``fn(item, *args, **kwargs)`` for every item as Dask tasks; yields ``(index, result)`` as each finishes.

    Keys as in :func:`map_tasks`. The client can use each result while the other
    tasks still run. The first task error is raised after the remaining tasks are
    cancelled; so are they if the caller stops iterating early.
    """
    if not items:
        return
    futures = submit_tasks(client, fn, items, *args, label=label, item_names=item_names, **kwargs)
    index = {f.key: i for i, f in enumerate(futures)}
    progress = ProgressLine(label, len(futures))
    try:
        for fut in as_completed(futures, loop=client.loop):
            i = index[fut.key]
            result = fut.result()
            progress.step()
            yield i, result
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        del futures


def map_tasks(
    client: Client,
    fn: Callable[..., R],
    items: Sequence[Any],
    *args: Any,
    label: str,
    item_names: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[R]:
    """Run ``fn(item, *args, **kwargs)`` for every item as Dask tasks; results in input order.

    Keys are ``label-<name>-<token>``, deterministic in the function and its inputs.
    The first task error is raised after the remaining tasks are cancelled.
    """
    results: list[Any] = [None] * len(items)
    for i, result in iter_tasks(client, fn, items, *args, label=label, item_names=item_names, **kwargs):
        results[i] = result
    return results
