"""One inference thread fed by a bounded queue, which runs requests of one batch key together.

MXNet's engine and hybridized blocks are not safe to call from many threads (apache/mxnet
#13199, #16431), so the service hands every image to :class:`BatchWorker`, whose one thread
loads the model, warms it up and runs it. Requests whose keys match (the padded input shape,
``Segmenter.batch_key``) run as one batch of up to ``max_batch``, waiting up to ``max_wait_s``
for company; a batch that fails is rerun one image at a time, so a bad image fails only its
own request. A full queue refuses at once (:class:`QueueFull`), never blocks.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Hashable, List, Optional

Callback = Callable[[Any, Optional[BaseException]], None]


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` jobs already, or the worker is stopping."""


@dataclass(eq=False)
class Job:
    """One image waiting for the model; ``done(result, error)`` is called once, from the
    worker thread, unless the job was cancelled first (its client gave up)."""

    item: Any
    key: Optional[Hashable]
    done: Callback
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class BatchWorker:
    """The one thread that runs ``run_batch(items) -> results`` (one result per item, in
    order), after ``setup()`` (loading, warm-up) has run in that same thread.
    ``on_batch(size, seconds)`` is told of every batch run (metrics)."""

    def __init__(self, run_batch: Callable[[List[Any]], List[Any]], max_batch: int = 8,
                 max_wait_s: float = 0.005, max_queue: int = 64,
                 setup: Optional[Callable[[], None]] = None,
                 on_batch: Optional[Callable[[int, float], None]] = None):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch and max_queue must be >= 1 and max_wait_s >= 0, got "
                             f"{max_batch}, {max_queue}, {max_wait_s}")
        self.run_batch, self.setup, self.on_batch = run_batch, setup, on_batch
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._queue: Deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="inference", daemon=True)
        self.ready = threading.Event()
        self.error: Optional[BaseException] = None  # what setup() raised

    def start(self) -> BatchWorker:
        self._thread.start()
        return self

    def depth(self) -> int:
        """Jobs waiting (not yet taken into a batch)."""
        return len(self._queue)

    def submit(self, item: Any, key: Optional[Hashable], done: Callback) -> Job:
        """Queue one item; :class:`QueueFull` at once when ``max_queue`` are waiting or the
        worker is stopping. ``key`` None: the item runs alone."""
        job = Job(item, key, done)
        with self._cond:
            if self._stopping:
                raise QueueFull("the service is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"queue full ({self.max_queue} images waiting)")
            self._queue.append(job)
            self._cond.notify()
        return job

    def stop(self, timeout: Optional[float] = None) -> None:
        """Refuse new jobs, run every queued one, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            if self.setup is not None:
                self.setup()
        except BaseException as err:  # noqa: B036 - reported to the service, which exits
            self.error = err
            self._fail_all(err)
            return
        self.ready.set()
        while True:
            jobs = self._take()
            if not jobs:
                return
            self._run(jobs)

    def _fail_all(self, err: BaseException) -> None:
        with self._cond:
            self._stopping = True
            jobs, self._queue = list(self._queue), collections.deque()
        for job in jobs:
            job.done(None, err)

    def _matching(self, first: Job, batch: List[Job]) -> None:
        """Move queued jobs of ``first``'s key into ``batch`` (under the lock)."""
        if first.key is None:
            return
        for job in list(self._queue):
            if len(batch) >= self.max_batch:
                return
            if job.key == first.key:
                self._queue.remove(job)
                batch.append(job)

    def _take(self) -> List[Job]:
        """The next batch: the oldest live job and queued ones of its key, waiting up to
        ``max_wait_s`` for more; [] once stopping with nothing queued."""
        with self._cond:
            while True:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return []
                first = self._queue.popleft()
                if not first.cancelled:
                    break
            batch = [first]
            until = time.monotonic() + self.max_wait_s
            while True:
                self._matching(first, batch)
                left = until - time.monotonic()
                if len(batch) >= self.max_batch or self._stopping or left <= 0:
                    break
                self._cond.wait(left)
        return [job for job in batch if not job.cancelled]

    def _run(self, jobs: List[Job]) -> None:
        """Run ``jobs`` as one batch; if that fails and there are several, each alone."""
        start = time.perf_counter()
        try:
            results = self.run_batch([job.item for job in jobs])
        except Exception as err:
            if len(jobs) == 1:
                jobs[0].done(None, err)
                return
            for job in jobs:
                self._run([job])
            return
        if self.on_batch is not None:
            self.on_batch(len(jobs), time.perf_counter() - start)
        for job, result in zip(jobs, results):
            job.done(result, None)
