"""The one inference path: bytes -> triage -> conversion -> model (torch or ONNX) -> ``Verdict``.

``Scanner`` loads a model once, reads and converts files on worker threads while the model scores
full batches, and keeps the input order. Files outside what the model was made for (see ``triage``)
get ``unknown`` with a reason instead of a confident guess.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from malvision.bundled import DEFAULT_MODEL, resolve_checkpoint
from malvision.convert.image import iter_plot_rows, plot_shape, resize_rows
from malvision.convert.opcodes import parse_opcodes
from malvision.convert.sequence import UNK, Vocabulary, byte_sequence, pad_batch
from malvision.convert.spec import ConvertSpec
from malvision.errors import ConversionError, InputError, MalvisionError
from malvision.io import DEFAULT_MAX_SIZE, MemorySource, Source
from malvision.sources import iter_sources
from malvision.triage import byte_stats, triage

__all__ = ["Verdict", "ScanError", "Scanner", "HEAD_BYTES"]

HEAD_BYTES = 64 * 1024  # what triage reads: magic, PE headers and section table
MAX_UNKNOWN_TOKENS = 0.5  # opcode input with more unknown mnemonics than this is not what the model read
OPCODE_BYTES_PER_TOKEN = 32  # opcode text kept per token of max_len: memory follows max_len, not file size
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
FIELDS = ("path", "sha256", "size", "verdict", "score", "family", "reason")


@dataclass(frozen=True)
class Verdict:
    """One scanned file: ``verdict`` is malware, benign or unknown; ``score`` the malware probability."""

    path: str
    sha256: str | None
    size: int | None
    verdict: str
    score: float | None
    family: str | None
    reason: str | None
    family_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScanError:
    """A file that could not be scanned (unreadable, too large, ...): the run goes on."""

    path: str
    message: str


@dataclass
class _Prepared:
    name: str
    sha256: str | None
    size: int
    x: np.ndarray | None
    reason: str | None


def _limit_threads(n: int) -> None:
    """Cap torch's and the BLAS libraries' thread pools (process-wide)."""
    import torch
    from threadpoolctl import threadpool_limits

    if n < 1:
        raise MalvisionError(f"--threads must be at least 1, got {n}")
    torch.set_num_threads(n)
    threadpool_limits(n)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Scanner:
    """Scan files, folders, stdin (``-``) and sample zips with one loaded model.

    Args:
        model: bundled model name, run folder or checkpoint file.
        threshold: malware-probability threshold (default: the model card's, chosen for a target FPR).
        backend: ``torch``, ``onnx`` or ``auto`` (ONNX when the model has a verified ONNX export).
        zip_password: open ``.zip`` inputs with this password and scan their entries in memory.
        threads: intra-op threads for inference and numpy's BLAS (process-wide). Parallelism comes
            from the ``workers`` that read and convert files; one inference thread is fastest for
            these small models, and more only fight the readers for the cores. None leaves them be.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        threshold: float | None = None,
        backend: str = "auto",
        batch_size: int = 32,
        workers: int = 2,
        max_size: int = DEFAULT_MAX_SIZE,
        zip_password: str | None = None,
        threads: int | None = 1,
    ) -> None:
        from malvision.checkpoint import load_checkpoint

        if threads is not None:
            _limit_threads(threads)

        self.model_path = resolve_checkpoint(model)
        ck = load_checkpoint(self.model_path)
        self.checkpoint = ck
        self.spec: ConvertSpec = ck.convert_spec()  # a CheckpointError naming the file for a bad spec
        self.classes = list(ck.classes)
        self.card: dict[str, Any] = dict((ck.extra or {}).get("card", {}))
        self.detector = sorted(self.classes) == ["benign", "malware"]
        self.temperature = float(self.card.get("temperature", 1.0))
        self.platt: dict[str, float] | None = self.card.get("platt")
        self.threshold = float(threshold if threshold is not None else self.card.get("threshold", 0.5))
        if not 0.0 <= self.threshold <= 1.0:
            raise MalvisionError(f"--threshold must be between 0 and 1, got {self.threshold}")
        self.vocab = Vocabulary(self.spec.vocab) if self.spec.kind == "opcodes" else None
        self.expects = "text" if self.spec.kind == "opcodes" else "pe"
        if batch_size < 1:
            raise MalvisionError(f"--batch-size must be at least 1, got {batch_size}")
        self.batch_size, self.workers, self.max_size = batch_size, max(1, workers), max_size
        self.zip_password = zip_password
        self.threads = threads
        self.backend = self._pick_backend(backend)

    def _pick_backend(self, backend: str) -> str:
        if backend not in ("auto", "torch", "onnx"):
            raise MalvisionError(f"unknown backend {backend!r}; use auto, torch or onnx")
        from malvision.export import OnnxModel, onnx_preferred

        onnx_path = self.model_path.with_suffix(".onnx")
        if backend == "onnx" and not onnx_path.is_file():
            raise MalvisionError(
                f"{onnx_path}: no ONNX export; run `malvision export {self.model_path} --onnx`"
            )
        if backend == "onnx" or (backend == "auto" and onnx_preferred(self.model_path)):
            self._onnx = OnnxModel(onnx_path, threads=self.threads)
            return "onnx"
        import torch

        self.checkpoint.model.eval()
        self._torch = torch
        return "torch"

    # -- the one path --------------------------------------------------------------------------
    def prepare(self, src: Source, stop: threading.Event | None = None) -> _Prepared:
        """Read ``src`` once: sha256, byte histogram, head for triage and the model input.

        ``stop``, when set by another thread, ends the read at the next chunk (an interrupted scan).
        """
        hist = np.zeros(256, dtype=np.int64)
        head = bytearray()
        kept = bytearray()
        keep = (
            self.spec.max_len
            if self.spec.kind == "bytes"
            else (
                min(self.max_size, OPCODE_BYTES_PER_TOKEN * self.spec.max_len)
                if self.expects == "text"
                else 0
            )
        )

        def tapped() -> Iterator[memoryview]:
            for chunk in src.chunks():
                if stop is not None and stop.is_set():
                    raise InputError(f"{src.name}: interrupted")
                arr = np.frombuffer(chunk, dtype=np.uint8)
                hist[:] += np.bincount(arr, minlength=256)
                if len(head) < HEAD_BYTES:
                    head.extend(chunk[: HEAD_BYTES - len(head)])
                if len(kept) < keep:
                    kept.extend(chunk[: keep - len(kept)])
                yield chunk

        x: np.ndarray | None = None
        problem: str | None = None
        if self.spec.kind == "image":
            try:
                h, w = plot_shape(src.size)
                x = resize_rows(iter_plot_rows(tapped(), src.size), h, w, self.spec.image_size)
            except ConversionError as e:
                problem = f"too small for a byte plot ({e})"
        if self.spec.kind != "image" or problem:
            for _ in tapped():
                pass
        reason = triage(bytes(head), byte_stats(hist), self.expects) or problem
        if reason is None and self.spec.kind == "bytes":
            x = byte_sequence(bytes(kept), self.spec.max_len)
        elif reason is None and self.spec.kind == "opcodes":
            try:
                assert self.vocab is not None
                # We keep a prefix; refuse non-ASCII anywhere, as parse_opcodes does for a whole file.
                if hist[128:].any():
                    raise ConversionError(
                        f"{src.name}: not ASCII text, expected one opcode mnemonic per line"
                    )
                if len(kept) < src.size:  # a cut prefix: drop the partial last line
                    del kept[kept.rfind(b"\n") + 1 :]
                x = self.vocab.encode(parse_opcodes(bytes(kept), src.name), self.spec.max_len)
                unknown = float(np.mean(x == UNK))
                if unknown > MAX_UNKNOWN_TOKENS:
                    reason = f"not opcode text the model knows ({unknown:.0%} of tokens are unknown to it)"
            except ConversionError as e:
                reason = str(e).removeprefix(f"{src.name}: ")
        return _Prepared(src.name, src.sha256, src.size, x if reason is None else None, reason)

    def infer(self, xs: list[np.ndarray]) -> np.ndarray:
        """Calibrated class probabilities for a batch of converted inputs."""
        if xs[0].ndim == 2:
            batch = np.stack(xs).astype(np.float32)[:, None] / np.float32(255.0)
        else:
            batch = pad_batch(xs)
        if self.backend == "onnx":
            logits = self._onnx.run(batch)
        else:
            torch = self._torch
            with torch.inference_mode():
                logits = self.checkpoint.model(torch.from_numpy(batch)).float().numpy()
        return softmax(logits, self.temperature)

    def _verdict(self, p: _Prepared, probs: np.ndarray | None) -> Verdict:
        if probs is None:
            return Verdict(p.name, p.sha256, p.size, "unknown", None, None, p.reason)
        if self.detector:
            score = float(probs[self.classes.index("malware")])
            if self.platt is not None:
                from malvision.detector import platt_scale

                score = float(platt_scale(np.array([score]), self.platt)[0])
            label = "malware" if score >= self.threshold else "benign"
            return Verdict(
                p.name, p.sha256, p.size, label, score, None, None
            )  # unrounded: it met the threshold
        top = int(probs.argmax())
        # A family model presumes malware; it names the family, it cannot say benign.
        return Verdict(
            p.name, p.sha256, p.size, "malware", None, self.classes[top], None, round(float(probs[top]), 6)
        )

    # -- inputs ------------------------------------------------------------------------------------
    def scan(self, paths: Iterable[str | Path]) -> Iterator[Verdict | ScanError]:
        """Verdicts (and errors) for every file under ``paths``, in input order."""

        stop = threading.Event()

        def work(name: str, opener: Callable[[], Source]) -> _Prepared:
            if stop.is_set():
                raise InputError(f"{name}: interrupted")
            try:
                src = opener()
            except InputError as e:
                if str(e).endswith(": empty file"):  # a verdict, not an error: there is nothing to judge
                    return _Prepared(name, EMPTY_SHA256, 0, None, "empty file")
                raise
            return self.prepare(src, stop)

        window = max(2 * self.batch_size, 4 * self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="malvision-read") as pool:
            try:
                pending: deque[tuple[str, Future[_Prepared]]] = deque()
                ready: list[tuple[str, _Prepared | ScanError]] = []
                for name, _, opener in iter_sources(
                    paths, zip_password=self.zip_password, max_size=self.max_size
                ):
                    pending.append((name, pool.submit(work, name, opener)))
                    if len(pending) >= window:
                        ready.append(self._collect(*pending.popleft()))
                        if (
                            sum(1 for _, r in ready if isinstance(r, _Prepared) and r.x is not None)
                            >= self.batch_size
                        ):
                            yield from self._flush(ready)
                            ready = []
                while pending:
                    ready.append(self._collect(*pending.popleft()))
                yield from self._flush(ready)
            except BaseException:  # Ctrl-C, SIGTERM or a closed generator: drop queued files, stop readers
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    @staticmethod
    def _collect(name: str, fut: Future[_Prepared]) -> tuple[str, _Prepared | ScanError]:
        try:
            return name, fut.result()
        except MalvisionError as e:
            return name, ScanError(name, str(e))
        except OSError as e:
            return name, ScanError(name, f"{name}: {e.strerror or e}")

    def _flush(self, ready: list[tuple[str, _Prepared | ScanError]]) -> Iterator[Verdict | ScanError]:
        todo = [r for _, r in ready if isinstance(r, _Prepared) and r.x is not None]
        probs: dict[int, np.ndarray] = {}
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            for p, pr in zip(chunk, self.infer([c.x for c in chunk]), strict=True):  # type: ignore[misc]
                probs[id(p)] = pr
        for _, r in ready:
            yield r if isinstance(r, ScanError) else self._verdict(r, probs.get(id(r)))

    def scan_bytes(self, name: str, data: bytes) -> Verdict:
        """Verdict for bytes already in memory (an upload, a zip entry)."""
        if not data:
            return Verdict(name, EMPTY_SHA256, 0, "unknown", None, None, "empty file")
        p = self.prepare(MemorySource.of(name, data))
        return self._verdict(p, self.infer([p.x])[0] if p.x is not None else None)
