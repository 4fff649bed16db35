"""Run a blocking producer in a thread and consume what it emits as an async stream, with back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

Emit = Callable[[bytes], None]
_DONE = object()


async def stream_from_thread(produce: Callable[[Emit], None], *, depth: int = 4) -> AsyncIterator[bytes]:
    """Yield the chunks ``produce(emit)`` emits from a worker thread; at most ``depth`` wait in between.

    Encoding (CPU work in Arrow, which releases the GIL) then overlaps with the consumer's network writes. A
    producer error is raised to the consumer; a consumer that stops early drains the queue so the thread ends.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)

    def emit(item: object) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    async def _run() -> None:
        try:
            await asyncio.to_thread(produce, emit)
        except BaseException as exc:  # hand the error to the consumer
            await queue.put(exc)
        else:
            await queue.put(_DONE)

    producer = asyncio.create_task(_run())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        # Drain so the producer thread is not left blocked on a full queue.
        while not producer.done():
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        await asyncio.gather(producer, return_exceptions=True)
