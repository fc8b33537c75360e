"""Reading files for a scan: bytes to model input and triage (``Preparer``), on threads or in worker
processes forked from a fresh server process (``ProcessReaders``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from malvision.convert.prepare import Prepared, Stop, prepare
from malvision.convert.sequence import UNK, Vocabulary
from malvision.convert.spec import ConvertSpec
from malvision.errors import EmptyFileError, InputError
from malvision.io import DEFAULT_MAX_SIZE, Source
from malvision.sources import Opener

__all__ = ["EMPTY_SHA256", "MAX_UNKNOWN_TOKENS", "Judged", "Preparer", "ProcessReaders", "signals_held"]

MAX_UNKNOWN_TOKENS = 0.5  # opcode input with more unknown mnemonics than this is not what the model read
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclass
class Judged:
    """A file read and triaged: its model input, or the reason the model cannot judge it."""

    name: str
    sha256: str | None
    size: int
    x: np.ndarray | None
    reason: str | None


@dataclass
class Preparer:
    """Bytes to model input for one model's spec: ``convert.prepare`` (one read), then triage.

    Holds only the spec, so it pickles: a worker process gets one when it starts.
    """

    spec: ConvertSpec
    max_size: int = DEFAULT_MAX_SIZE
    vocab: Vocabulary | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.vocab = Vocabulary(self.spec.vocab) if self.spec.kind == "opcodes" else None

    def prepare(self, src: Source, stop: Stop | None = None) -> Judged:
        """Read ``src`` once: sha256, triage and the model input (None, with a reason, for a file
        outside what the model was made for). ``stop``, when set, ends the read at the next chunk."""
        return self.judge(prepare(src, self.spec, self.vocab, stop))

    def judge(self, p: Prepared) -> Judged:
        """Triage a prepared source: its model input, or the reason the model cannot judge it."""
        reason = p.triage(self.spec) or p.problem
        if reason is None and self.spec.kind == "opcodes":
            unknown = float(np.mean(p.x == UNK))
            if unknown > MAX_UNKNOWN_TOKENS:
                reason = f"not opcode text the model knows ({unknown:.0%} of tokens are unknown to it)"
        return Judged(p.name, p.sha256, p.size, p.x if reason is None else None, reason)

    def open_and_prepare(self, name: str, opener: Opener, stop: Stop | None = None) -> Judged:
        """``prepare`` what ``opener`` opens; an empty file is a verdict (unknown), not an error."""
        if stop is not None and stop.is_set():
            raise InputError(f"{name}: interrupted")
        try:
            src = opener()
        except EmptyFileError:  # there is nothing to judge
            return Judged(name, EMPTY_SHA256, 0, None, "empty file")
        return self.prepare(src, stop)


# A worker process's preparer and stop flag, set once by ``_start_worker``.
_worker: tuple[Preparer, Stop] | None = None


def _start_worker(preparer: Preparer, stop: Stop) -> None:
    """Worker-process set-up: Ctrl-C is the parent's to handle; one BLAS thread per worker."""
    global _worker
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threadpool_limits(1)
    _worker = (preparer, stop)


def _up() -> bool:
    """A task that tells the parent a worker has started (its initializer has run)."""
    return True


def _prepare_in_worker(name: str, opener: Opener) -> Judged:
    assert _worker is not None, "not a scan worker process"
    preparer, stop = _worker
    return preparer.open_and_prepare(name, opener, stop)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive within the block are raised as it ends (in the main thread, which
    signals reach; elsewhere the block runs as it is). Around the start of ``ProcessReaders``: cut off
    half-way, a pool loses track of a worker, which then waits forever or fails to find the stop flag
    once its parent has left."""
    held: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    before = (
        {s: signal.signal(s, lambda n, _: held.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
        if main
        else {}
    )
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        for s in held:
            signal.raise_signal(s)


class ProcessReaders:
    """Worker processes that open and prepare files on disk, free of this process's GIL.

    Started with ``forkserver`` (``spawn`` where there is none, which has every worker import numpy and
    ours): forking a parent that runs threads (ours, torch's) is not safe, but forking multiprocessing's
    server, a fresh process that has imported this module once, is. The first start waits for that
    server, a few tenths of a second, and ``ready`` says when the first worker is up: until then the
    scanner reads on its threads. Make one under ``signals_held``.
    """

    def __init__(self, preparer: Preparer, n: int) -> None:
        import multiprocessing  # here: a scan on threads never pays for importing it
        from concurrent.futures import ProcessPoolExecutor

        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__, "threadpoolctl"])  # once, before the server starts
        else:  # Windows
            ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.pool = ProcessPoolExecutor(
            n, mp_context=ctx, initializer=_start_worker, initargs=(preparer, self.stop)
        )
        self.usable = True
        # one task a worker: the pool starts a process for each task it has no idle worker for
        self._up = [self.pool.submit(_up) for _ in range(n)]

    @property
    def started(self) -> int:
        """How many workers are up (a pool that broke while starting counts as up: ``submit`` says so)."""
        return sum(f.done() for f in self._up)

    @property
    def ready(self) -> bool:
        """Whether a worker is up."""
        return self.started > 0

    def submit(self, name: str, opener: Opener) -> Future[Judged] | None:
        """A future for the file, or None when the pool has broken (the caller reads it on a thread)."""
        if not self.usable:
            return None
        try:
            return self.pool.submit(_prepare_in_worker, name, opener)
        except (BrokenExecutor, RuntimeError):  # BrokenProcessPool, without importing multiprocessing
            self.usable = False
            return None

    def close(self, cancel: bool = False) -> None:
        """Shut the pool down; ``cancel`` drops queued files and ends reads at their next chunk.

        Always waits for the workers: one still starting when its parent left would print a
        traceback as it failed to find the parent's stop flag.
        """
        if cancel:
            self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=cancel)
