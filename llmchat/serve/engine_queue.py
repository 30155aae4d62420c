"""One ModelSource shared by concurrent HTTP requests: they wait in order for it, each call runs
in one worker thread (the engine decodes one sequence at a time, and torch is not called from two
threads at once), and a stream whose reader goes away stops its generation after the current token.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

from ..engine.events import Finished
from ..engine.source import ModelSource
from ..signals import StopFlag
from .openai_api import ApiError, Limits


class Engine:
    """One ModelSource behind a queue: calls run one at a time in a worker thread."""

    def __init__(self, limits: Limits):
        self.source: ModelSource | None = None
        self.load_error: BaseException | None = None
        self.limits = limits
        self.lock = asyncio.Lock()
        self.waiting = 0
        self.served = 0  # generations finished (or stopped)
        self.last: Finished | None = None  # how the last one ended (/health: "abort" after a disconnect)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmchat-engine")

    def ready(self) -> ModelSource:
        if self.source is None:
            raise ApiError(503, "the model is still loading; try again in a moment", "service_unavailable")
        return self.source

    def admit(self) -> None:
        """429 when the queue is full: checked before a response starts (a stream cannot change its
        status once it has begun)."""
        if self.waiting >= self.limits.max_queue:
            raise ApiError(429, f"{self.waiting} requests are already waiting for the model; try again later",
                           "rate_limit_exceeded")

    async def _turn(self):
        self.admit()
        self.waiting += 1
        try:
            await self.lock.acquire()
        finally:
            self.waiting -= 1

    async def call(self, fn: Callable[[], Any]) -> Any:
        await self._turn()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn)
        finally:
            self.lock.release()

    async def stream(self, make: Callable[[], Iterator], stop: StopFlag):
        """Items of `make()` as they come from the worker thread. When the consumer goes away
        (client disconnect: the generator is closed or cancelled) the stop flag is set and the
        engine is waited for, shielded, so the next request finds it free."""
        import anyio

        await self._turn()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def work() -> None:
            try:
                for item in make():
                    if isinstance(item, Finished):
                        self.served, self.last = self.served + 1, item
                    loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
            except BaseException as exc:  # noqa: BLE001  (handed to the consumer)
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

        future = loop.run_in_executor(self.executor, work)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.requested = True  # a no-op when the generation already finished
            with anyio.CancelScope(shield=True):
                await future
            self.lock.release()
