"""Prepare the next batch in a background thread while the model works on the current one.

Patch gathers, copies and augmentations are torch operations that release the GIL, so a
thread can cut batch k+1 while the main thread runs the model on batch k. The order of the
items, and the random draws made to produce them, are those of the plain iterator: only the
producer thread draws from the iterator, one item after another. That holds as long as making
an item draws only from its own generator (a ``torch.Generator`` passed to ``make``), never
from the global RNG that the model's dropout uses in the main thread.

Memory is bounded: at most ``depth`` items are made ahead of the one in use. An exception
raised while making an item is raised again in the consumer, in its place in the sequence.
Closing the iterator (explicitly, by leaving a ``with`` block, or by dropping it, e.g. when a
``for`` loop breaks) stops the thread without hanging.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Generic, Iterable, Iterator, Optional, TypeVar

import torch

from deephyperx.sampling import PatchSampler

T = TypeVar("T")

#: The end of the producer's iterator.
_END = object()


class _Failure:
    """An exception raised by the producer, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def _produce(items: Iterator[Any], out: "queue.SimpleQueue[Any]", slots: threading.Semaphore,
             stop: threading.Event) -> None:
    """The producer thread: take a slot, make the next item, hand it over; until the end, an
    error or ``stop``. It holds no reference to the :class:`Prefetcher`, so dropping that
    object closes it."""
    try:
        while True:
            slots.acquire()
            if stop.is_set():
                break
            try:
                item = next(items)
            except StopIteration:
                out.put(_END)
                break
            out.put(item)
    except BaseException as error:  # noqa: BLE001  (every error belongs to the consumer)
        out.put(_Failure(error))
    finally:
        close = getattr(items, "close", None)
        if callable(close):  # a generator's cleanup runs in the thread that ran it
            close()


class Prefetcher(Generic[T]):
    """Iterate over ``iterable`` with its items made ``depth`` ahead by a daemon thread."""

    def __init__(self, iterable: Iterable[T], depth: int = 1):
        if depth < 1:
            raise ValueError(f"prefetch depth {depth} must be at least 1 (use the iterable itself for none)")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = threading.Semaphore(depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=_produce, args=(iter(iterable), self._queue, self._slots, self._stop),
                                        name="deephyperx-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> "Prefetcher[T]":
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._finish()
            raise StopIteration
        if isinstance(item, _Failure):
            self._finish()
            raise item.error
        self._slots.release()  # the producer may start on the item after the next one
        return item

    def _finish(self) -> None:
        self._done = True
        self._thread.join()

    def close(self) -> None:
        """Stop the producer (after the item it is making, if any) and wait for it."""
        if self._done:
            return
        self._done = True
        self._stop.set()
        self._slots.release()  # wake a producer that waits for a slot
        self._thread.join()

    def __enter__(self) -> "Prefetcher[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self.close()


def prefetch(iterable: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``iterable`` with ``depth`` items made ahead in a background thread; ``depth`` 0 returns
    a plain iterator (no thread), so callers can switch prefetching off with one number."""
    return iter(iterable) if depth == 0 else Prefetcher(iterable, depth)


def patch_batches(sampler: PatchSampler, rows: torch.Tensor, cols: torch.Tensor,
                  batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """``(rows, cols, patches)`` of successive batches of the pixels (rows, cols), in order: the
    batches an inference loop feeds its model, ready to be prefetched."""
    for start in range(0, len(rows), batch_size):
        r, c = rows[start:start + batch_size], cols[start:start + batch_size]
        yield r, c, sampler.patches(r, c)


def resolve_depth(depth: Optional[int], device: Optional[torch.device] = None,
                  threads_free: Optional[int] = None) -> int:
    """The prefetch depth to use: ``depth`` when given; else 1 when the model runs on an
    accelerator (the processors only feed it) or when at least one processor is left beside
    torch's intra-op threads (``threads_free``, default: usable processors minus
    ``torch.get_num_threads()``); else 0, since a prefetch thread would only compete with the
    model for the processors."""
    if depth is not None:
        return depth
    if device is not None and torch.device(device).type != "cpu":
        return 1
    if threads_free is None:
        threads_free = _usable_processors() - torch.get_num_threads()
    return 1 if threads_free >= 1 else 0


def _usable_processors() -> int:
    """Processors this process may run on (its affinity where the platform tells it)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
