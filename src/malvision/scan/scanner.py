"""The one inference path: bytes -> triage -> conversion -> model (torch or ONNX) -> ``Verdict``.

``Scanner`` loads a model once, reads and converts files on worker threads while the model scores
full batches, and keeps the input order. Files outside what the model was made for (see ``triage``)
get ``unknown`` with a reason instead of a confident guess.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from malvision.bundled import DEFAULT_MODEL, resolve_checkpoint
from malvision.calibration import detector_score, softmax
from malvision.card import band_points
from malvision.convert.batch import batch
from malvision.convert.prepare import Prepared, Stop, prepare
from malvision.convert.spec import ConvertSpec
from malvision.errors import CheckpointError, MalvisionError
from malvision.export import OnnxModel, TreeArrays, onnx_report, sidecar, standalone_report, tree_arrays
from malvision.io import DEFAULT_MAX_SIZE, MemorySource, Source
from malvision.scan.readers import EMPTY_SHA256, Judged, Preparer, ProcessReaders, signals_held
from malvision.scan.verdict import ScanError, Verdict, band_of
from malvision.sources import FileOpener, Opener, iter_sources

if TYPE_CHECKING:
    from malvision.checkpoint import Checkpoint

__all__ = ["BACKENDS", "PROCESS_AFTER", "SEQ_BUDGET", "Scanner"]

BACKENDS = ("auto", "torch", "onnx", "numpy")
PROCESS_AFTER = 64  # processes="auto": files on disk read on threads before worker processes start
SEQ_BUDGET = 1 << 21  # ids in one padded batch of sequences (int64: 16 MiB), unless one file is longer


def _limit_threads(n: int) -> None:
    """Cap numpy's BLAS pool, and torch's if torch is loaded (process-wide)."""
    from threadpoolctl import threadpool_limits

    if n < 1:
        raise MalvisionError(f"--threads must be at least 1, got {n}")
    threadpool_limits(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _prefer_export(report: dict[str, Any]) -> bool:
    """Whether ``auto`` takes the export even with torch loaded: ONNX Runtime when it timed faster a batch,
    a tree model's checked numpy trees always (a millisecond or two a batch either way on 2 cores, where
    a timing taken at export flipped the choice from one export to the next)."""
    return bool(report.get("onnx_faster")) or isinstance(report.get("trees"), dict)


class Scanner:
    """Scan files, folders, stdin (``-``) and sample zips with one loaded model.

    Args:
        model: bundled model name, run folder or checkpoint file.
        threshold: malware-probability threshold (default: the model card's, chosen for a target FPR).
        backend: ``torch``, ``onnx``, ``numpy`` or ``auto``: ONNX when the model has a verified, current ONNX
            export and either it timed faster per batch or torch is not loaded yet (importing torch
            costs about a second and 150 MB, more than any per-batch gap saves on a scan of fewer
            than tens of thousands of files). That path reads the model's spec and card from the
            export's sidecar and never imports torch (a cold start of a fraction of a second). For a
            tree model whose export checked its trees in numpy, ``auto`` walks them (``numpy``), torch
            loaded or not, and imports no ONNX Runtime either (a sixth of a cold ``scan``).
        workers: threads (or processes) that read and convert files while the model scores batches.
        processes: read and convert files on disk in ``workers`` processes instead of threads, which
            the GIL does not serialise: ``True`` always, ``None`` (auto) once a run has passed
            ``PROCESS_AFTER`` files, ``False`` never. Processes start with ``forkserver``, and each
            imports the calling script again: in your own script, keep the scan under
            ``if __name__ == "__main__":`` (as for any multiprocessing). The processes stay up for
            later scans until ``close()`` (or the end of a ``with Scanner(...)`` block). Stdin and
            zip entries are always read on threads in this process.
        zip_password: open ``.zip`` inputs with this password and scan their entries in memory.
        threads: intra-op threads for inference and numpy's BLAS (process-wide). Parallelism comes
            from the ``workers``; one inference thread is fastest for these small models, and more
            only fight the readers for the cores. None leaves them be.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        threshold: float | None = None,
        backend: str = "auto",
        batch_size: int = 32,
        workers: int = 2,
        processes: bool | None = False,
        max_size: int = DEFAULT_MAX_SIZE,
        zip_password: str | None = None,
        threads: int | None = 1,
    ) -> None:
        if backend not in BACKENDS:
            raise MalvisionError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
        if not isinstance(batch_size, Integral) or batch_size < 1:
            raise MalvisionError(f"--batch-size must be a whole number of at least 1, got {batch_size!r}")
        if not isinstance(workers, Integral) or workers < 0:  # 0 reads on one worker, as 1 does
            raise MalvisionError(f"--workers must be a whole number of at least 0, got {workers!r}")
        if not isinstance(max_size, Integral) or max_size < 1:
            raise MalvisionError(f"--max-size must be positive, got {max_size!r}")
        if threads is not None:
            _limit_threads(threads)
        self.model_path = resolve_checkpoint(model)
        self.threads = threads
        info = self._onnx_info(backend)
        if info is None:
            self.backend = "torch"
            ck = self.checkpoint
            self.model_name, spec, self.classes = ck.model_name, ck.convert_spec(), list(ck.classes)
            self.card: dict[str, Any] = dict((ck.extra or {}).get("card", {}))
            ck.model.eval()
        else:
            self.backend = "numpy" if isinstance(self._runner, TreeArrays) else "onnx"
            self.model_name, self.classes, self.card = info["name"], list(info["classes"]), info["card"]
            try:
                spec = ConvertSpec.from_dict(info["spec"])
            except MalvisionError as e:
                raise CheckpointError(f"{sidecar(self.model_path.with_suffix('.onnx'))}: {e}") from None
        self.spec: ConvertSpec = spec
        self.detector = sorted(self.classes) == ["benign", "malware"]
        self.temperature = float(self.card.get("temperature", 1.0))
        self.platt: dict[str, float] | None = self.card.get("platt")
        try:
            self.threshold = float(threshold if threshold is not None else self.card.get("threshold", 0.5))
        except (TypeError, ValueError):
            raise MalvisionError(f"--threshold must be a number between 0 and 1, got {threshold!r}") from None
        self.bands = band_points(self.card) if self.detector else None
        if not 0.0 <= self.threshold <= 1.0:
            raise MalvisionError(f"--threshold must be between 0 and 1, got {self.threshold}")
        self.preparer = Preparer(spec, max_size)
        self.vocab = self.preparer.vocab
        self.batch_size, self.workers, self.max_size = batch_size, max(1, workers), max_size
        self.processes = processes
        self._procs: ProcessReaders | None = None  # started by the first scan that wants them
        self.zip_password = zip_password

    def _onnx_info(self, backend: str) -> dict[str, Any] | None:
        """The model's metadata from its ONNX export's sidecar when scanning will use the export (ONNX
        Runtime, or a tree model's numpy arrays), else None."""
        onnx_path = self.model_path.with_suffix(".onnx")
        standalone = self.model_path.suffix.lower() == ".onnx"  # an export, without its checkpoint
        if backend == "torch":
            if standalone:
                raise MalvisionError(
                    f"{onnx_path}: an ONNX export has no torch model; give the .pt it was exported from "
                    "(scan reads the export itself with --backend auto, onnx or numpy)"
                )
            return None
        if backend in ("onnx", "numpy") and not onnx_path.is_file():
            raise MalvisionError(
                f"{onnx_path}: no ONNX export; run `malvision export {self.model_path} --onnx`"
            )
        report = standalone_report(onnx_path) if standalone else onnx_report(self.model_path)
        if (
            backend == "auto"
            and not standalone
            and not (report and (_prefer_export(report) or "torch" not in sys.modules))
        ):
            return None
        if report is None or "model" not in report:  # an old or stale sidecar: the checkpoint says
            ck = self.checkpoint
            card = (ck.extra or {}).get("card", {})
            info = {"name": ck.model_name, "spec": ck.spec, "classes": ck.classes, "card": card}
        else:
            info = report["model"]
            ok = (
                isinstance(info, dict)
                and isinstance(info.get("name"), str)
                and isinstance(info.get("classes"), list)
                and all(isinstance(c, str) for c in info["classes"])
                and isinstance(info.get("card"), dict)
                and isinstance(info.get("spec"), dict)
            )
            if not ok:
                source = "CHECKPOINT" if standalone else self.model_path
                raise CheckpointError(
                    f"{sidecar(onnx_path)}: malformed model record; re-export with "
                    f"`malvision export {source} --onnx`"
                )
        arrays = tree_arrays(self.model_path, report) if backend in ("auto", "numpy") and report else None
        if backend == "numpy" and arrays is None:
            raise MalvisionError(
                f"{self.model_path}: no current numpy trees beside it (tree models only); run "
                f"`malvision export {self.model_path} --onnx`"
            )
        self._runner: OnnxModel | TreeArrays = arrays or OnnxModel(onnx_path, threads=self.threads)
        return info

    def close(self) -> None:
        """Stop the worker processes, if a scan started them (they are kept for the next scan)."""
        if self._procs is not None:
            self._procs.close()
            self._procs = None

    def __enter__(self) -> Scanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @functools.cached_property
    def checkpoint(self) -> Checkpoint:
        """The torch checkpoint (loaded on first use when scanning runs on ONNX: explain needs it)."""
        from malvision.checkpoint import load_checkpoint

        ck = load_checkpoint(self.model_path)
        if self.threads is not None:
            _limit_threads(self.threads)
        return ck

    # -- the one path --------------------------------------------------------------------------
    def prepare(self, src: Source, stop: Stop | None = None) -> Judged:
        """Read ``src`` once and convert it for this model (see ``Preparer.prepare``)."""
        return self.preparer.prepare(src, stop)

    def infer(self, xs: list[np.ndarray]) -> np.ndarray:
        """Calibrated class probabilities for a batch of converted inputs."""
        return softmax(self.logits(xs), self.temperature)

    def logits(self, xs: list[np.ndarray]) -> np.ndarray:
        """The model's raw logits (N, classes) for a batch of converted inputs. Sequences go in groups
        of similar length, each padded batch within ``SEQ_BUDGET`` ids, so one long file does not pad
        every other file of its batch to its length."""
        if len(xs) < 2 or xs[0].ndim != 1:
            return self._logits(xs)
        out = np.empty((len(xs), len(self.classes)), dtype=np.float32)
        group: list[int] = []
        for i in np.argsort([len(x) for x in xs], kind="stable").tolist():  # shortest first
            if group and len(xs[i]) * (len(group) + 1) > SEQ_BUDGET:
                out[group] = self._logits([xs[j] for j in group])
                group = []
            group.append(i)
        out[group] = self._logits([xs[j] for j in group])
        return out

    def _logits(self, xs: list[np.ndarray]) -> np.ndarray:
        inputs = batch(xs)
        if self.backend != "torch":
            logits = self._runner.run(inputs)
        else:
            import torch

            with torch.inference_mode():
                logits = self.checkpoint.model(torch.from_numpy(inputs)).float().numpy()
        return logits

    def _verdict(self, p: Judged, logits: np.ndarray | None) -> Verdict:
        if logits is None:
            return Verdict(p.name, p.sha256, p.size, "unknown", None, None, p.reason)
        if self.detector:  # from log-odds, so a very confident score never rounds to a tie at 1.0
            malware = self.classes.index("malware")
            score = float(detector_score(logits[None], malware, self.temperature, self.platt)[0])
            label = "malware" if score >= self.threshold else "benign"
            return Verdict(  # unrounded: it met the threshold
                p.name, p.sha256, p.size, label, score, None, None,
                threshold=self.threshold, band=band_of(score, self.bands),
            )  # fmt: skip
        probs = softmax(logits[None], self.temperature)[0]
        top = int(probs.argmax())
        # A family model presumes malware; it names the family, it cannot say benign.
        return Verdict(
            p.name, p.sha256, p.size, "malware", None, self.classes[top], None, round(float(probs[top]), 6)
        )

    # -- inputs ------------------------------------------------------------------------------------
    def scan(self, paths: str | Path | Iterable[str | Path]) -> Iterator[Verdict | ScanError]:
        """Verdicts (and errors) for every file under ``paths``, in input order."""
        stop = threading.Event()
        if self._procs is not None and not self._procs.usable:  # broken in an earlier scan
            self._procs.close(cancel=True)
            self._procs = None
        procs = self._procs
        if procs is not None:
            procs.stop.clear()
        files = 0
        window = max(2 * self.batch_size, 4 * self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="malvision-read") as pool:
            try:
                pending: deque[tuple[str, Opener, Future[Judged]]] = deque()
                ready: list[tuple[str, Judged | ScanError]] = []
                for name, _, opener in iter_sources(
                    paths, zip_password=self.zip_password, max_size=self.max_size
                ):
                    if isinstance(opener, FileOpener):
                        files += 1
                    if (
                        procs is None
                        and isinstance(opener, FileOpener)
                        and (self.processes or (self.processes is None and files > PROCESS_AFTER))
                    ):
                        with signals_held():  # raised once the pool is started and held here
                            procs = self._procs = ProcessReaders(self.preparer, self.workers)
                    fut = (
                        procs.submit(name, opener)
                        if procs and procs.ready and isinstance(opener, FileOpener)
                        else None
                    )
                    if fut is None:
                        fut = pool.submit(self.preparer.open_and_prepare, name, opener, stop)
                    pending.append((name, opener, fut))
                    if len(pending) >= window:
                        ready.append(self._collect(*pending.popleft(), procs))
                        if (
                            sum(1 for _, r in ready if isinstance(r, Judged) and r.x is not None)
                            >= self.batch_size
                        ):
                            yield from self._flush(ready)
                            ready = []
                while pending:
                    ready.append(self._collect(*pending.popleft(), procs))
                yield from self._flush(ready)
            except BaseException:  # Ctrl-C, SIGTERM or a closed generator: drop queued files, stop readers
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                if procs is not None:
                    procs.close(cancel=True)
                    self._procs = None
                raise

    def _collect(
        self, name: str, opener: Opener, fut: Future[Judged], procs: ProcessReaders | None
    ) -> tuple[str, Judged | ScanError]:
        try:
            try:
                return name, fut.result()
            except BrokenExecutor:  # a worker process died (killed, out of memory): read it here instead
                if procs is not None:
                    procs.usable = False
                return name, self.preparer.open_and_prepare(name, opener)
        except MalvisionError as e:
            return name, ScanError(name, str(e))
        except OSError as e:
            return name, ScanError(name, f"{name}: {e.strerror or e}")

    def _flush(self, ready: list[tuple[str, Judged | ScanError]]) -> Iterator[Verdict | ScanError]:
        todo = [r for _, r in ready if isinstance(r, Judged) and r.x is not None]
        logits: dict[int, np.ndarray] = {}
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            for p, z in zip(chunk, self.logits([c.x for c in chunk]), strict=True):  # type: ignore[misc]
                logits[id(p)] = z
        for _, r in ready:
            yield r if isinstance(r, ScanError) else self._verdict(r, logits.get(id(r)))

    def scan_bytes(self, name: str, data: bytes) -> Verdict:
        """Verdict for bytes already in memory (an upload, a zip entry)."""
        if len(data) == 0:  # bytes, or any buffer of bytes (MemorySource.of takes both)
            return Verdict(name, EMPTY_SHA256, 0, "unknown", None, None, "empty file")
        return self.verdict_of(prepare(MemorySource.of(name, data), self.spec, self.vocab))

    def verdict_of(self, prepared: Prepared) -> Verdict:
        """Verdict for a source already read by ``convert.prepare`` under this model's spec."""
        p = self.preparer.judge(prepared)
        return self._verdict(p, self.logits([p.x])[0] if p.x is not None else None)
