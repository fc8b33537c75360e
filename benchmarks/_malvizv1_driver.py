"""Run the peer tool malvizv1 over many files with ONE held inference session; print JSON timings.

Run with the malvizv1 venv's Python (it imports malvizv1, onnxruntime and Pillow, not malvision), from
benchmarks/scan.py. malvizv1's own ``scan_file`` builds a new ONNX Runtime session per call; this
driver builds one ``ort.InferenceSession(get_model_path())`` and then, per file, does exactly what
``scan_file`` does after that: ``pe_file_to_image_dynamic`` + ``preprocess_image`` + ``session.run`` +
``softmax`` + its threshold rule (confidence below 0.90 is "uncertain"). The loop is timed as a whole.
``--threads N`` sets the session's intra-op threads (its default: ONNX Runtime's own pool).

Inputs, never executed, only read as bytes:
    --paths-file LIST   one file path per line (files on disk)
    --frames            entries on stdin as ``<size> <name>\\n`` + ``size`` bytes (zip entries the parent
                        read in memory); each is put in an anonymous memfd (RAM, no file system) and
                        handed to ``pe_file_to_image_dynamic`` as ``/proc/self/fd/N``, so its code runs
                        unchanged and no sample is ever written to disk.

    /tmp/mz/venv/bin/python benchmarks/_malvizv1_driver.py --paths-file files.txt > peer.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

t_import = time.perf_counter()
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import PIL  # noqa: E402
from malvizv1 import scanner  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - t_import


def read_frames(stream: object) -> list[tuple[str, bytes]]:
    """``<size> <name>\\n`` + bytes, repeated, until EOF."""
    out = []
    buf = stream.buffer  # type: ignore[attr-defined]
    while header := buf.readline():
        size_text, name = header.decode().rstrip("\n").split(" ", 1)
        data = buf.read(int(size_text))
        if len(data) != int(size_text):
            raise SystemExit(f"driver: short frame for {name}")
        out.append((name, data))
    return out


@contextmanager
def memfd_path(data: bytes) -> Iterator[str]:
    """A path that reads back ``data`` from anonymous memory (Linux memfd), closed afterwards."""
    fd = os.memfd_create("malvizv1-entry", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths-file", help="file with one path per line")
    ap.add_argument("--frames", action="store_true", help="read entries from stdin (see the docstring)")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    args = ap.parse_args()
    if bool(args.paths_file) == args.frames:
        raise SystemExit("driver: give exactly one of --paths-file and --frames")

    if args.frames:
        entries: list[tuple[str, bytes | None]] = list(read_frames(sys.stdin))
    else:
        with open(args.paths_file, encoding="utf-8") as f:
            entries = [(line.rstrip("\n"), None) for line in f if line.strip()]

    class_names = scanner.load_class_names()
    t = time.perf_counter()
    opts = ort.SessionOptions()
    if args.threads:
        opts.intra_op_num_threads = args.threads
    session = ort.InferenceSession(scanner.get_model_path(), opts, providers=["CPUExecutionProvider"])
    session_seconds = time.perf_counter() - t
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    benign = class_names.index("Benign")

    per_file = []
    total_bytes = 0
    t_loop = time.perf_counter()
    for name, data in entries:
        t_file = time.perf_counter()
        try:
            if data is None:
                total_bytes += os.path.getsize(name)
                image = scanner.pe_file_to_image_dynamic(name)
            else:
                total_bytes += len(data)
                with memfd_path(data) as path:
                    image = scanner.pe_file_to_image_dynamic(path)
            x = scanner.preprocess_image(image)
            logits = session.run([output_name], {input_name: x})[0]
            probs = scanner.softmax(logits)
            pred_idx = int(np.argmax(probs, axis=1)[0])
            pred_label = class_names[pred_idx]
            confidence = float(probs[0, pred_idx])
            if confidence < scanner.DEFAULT_CONFIDENCE_THRESHOLD:
                result = "uncertain"
            elif pred_label == "Benign":
                result = "benign"
            else:
                result = "malware"
            rec = {
                "name": name,
                "result": result,
                "prediction": pred_label,
                "confidence": confidence,
                "benign_probability": float(probs[0, benign]),
            }
        except Exception as e:  # malvizv1 raises ValueError for empty or tiny files; keep going
            rec = {"name": name, "error": f"{type(e).__name__}: {e}"}
        rec["seconds"] = time.perf_counter() - t_file
        per_file.append(rec)
    seconds = time.perf_counter() - t_loop

    json.dump(
        {
            "files": len(entries),
            "seconds": seconds,
            "bytes": total_bytes,
            "import_seconds": IMPORT_SECONDS,
            "session_seconds": session_seconds,
            "threads": args.threads,
            "threshold": scanner.DEFAULT_CONFIDENCE_THRESHOLD,
            "model": os.path.basename(scanner.get_model_path()),
            "versions": {
                "malvizv1": _version("malvizv1"),
                "onnxruntime": ort.__version__,
                "numpy": np.__version__,
                "pillow": PIL.__version__,
                "python": sys.version.split()[0],
            },
            "per_file": per_file,
        },
        sys.stdout,
    )


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    main()
