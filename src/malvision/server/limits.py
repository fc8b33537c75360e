"""A server's limits: settings, the bounded queue of inference tickets, and the in-memory PNG store."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import HTTPException

from malvision.errors import MalvisionError

__all__ = ["DEFAULT_MAX_UPLOAD", "ServerSettings", "Limiter", "Ticket", "PngStore"]

DEFAULT_MAX_UPLOAD = 64 * 1024**2
T = TypeVar("T")


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server: upload size (bytes), request timeout (s), workers, queue, API key."""

    max_upload: int = DEFAULT_MAX_UPLOAD
    timeout: float = 30.0
    max_concurrent: int = 2
    queue: int = 8
    api_key: str | None = None
    max_files: int = 64
    png_store: int = 64

    def __post_init__(self) -> None:
        for name in ("max_upload", "max_concurrent", "max_files", "png_store"):
            if int(getattr(self, name)) < 1:
                raise MalvisionError(f"server setting {name} must be positive, got {getattr(self, name)}")
        if self.queue < 0:
            raise MalvisionError(f"server setting queue must be 0 or more, got {self.queue}")
        if not self.timeout > 0:
            raise MalvisionError(f"server setting timeout must be positive seconds, got {self.timeout}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise MalvisionError("--api-key must be at least 8 characters")


class Limiter:
    """``running`` worker threads and room for ``waiting`` more requests; tickets beyond that get 503."""

    def __init__(self, running: int, waiting: int) -> None:
        self.capacity = running + waiting
        self.pool = ThreadPoolExecutor(running, thread_name_prefix="malvision-infer")
        self._lock = threading.Lock()
        self.admitted = 0
        self.running = 0

    def admit(self) -> Ticket:
        """A ticket, or 503 when ``running + waiting`` requests are already in."""
        with self._lock:
            if self.admitted >= self.capacity:
                raise HTTPException(
                    503,
                    "server busy: all workers and queue places are taken; retry shortly",
                    {"Retry-After": "1"},
                )
            self.admitted += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._lock:
            self.admitted -= 1

    def _count(self, delta: int) -> None:
        with self._lock:
            self.running += delta

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": self.running,
                "waiting": self.admitted - self.running,
                "capacity": self.capacity,
            }

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Ticket:
    """One admitted request; released once, when its job ends (or at once if it never submitted one)."""

    limiter: Limiter
    submitted: bool = False
    _released: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.limiter._release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker thread; the ticket is released when it ends, however it ends."""

        def job() -> T:
            self.limiter._count(1)
            try:
                return fn(*args)
            finally:
                self.limiter._count(-1)

        fut: Future[T] = self.limiter.pool.submit(job)
        self.submitted = True
        fut.add_done_callback(lambda _f: self.release())
        return await asyncio.wrap_future(fut)


class PngStore:
    """The last ``capacity`` explanation PNGs, in memory, under unguessable ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, png: bytes) -> str:
        key = secrets.token_urlsafe(18)
        with self._lock:
            self._items[key] = png
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._items.get(key)
