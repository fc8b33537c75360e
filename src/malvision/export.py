"""ONNX export with a parity check against torch, and the ONNX Runtime model the scanner can use.

A tree model's export also writes its trees as numpy arrays (``TreeArrays``), checked the same way: a
scan walks them in numpy without importing ONNX Runtime, whose import was a sixth of a cold ``scan``
(``benchmarks/cold_start.py``)."""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from malvision.convert.spec import VECTOR_KINDS
from malvision.errors import CheckpointError, MalvisionError

__all__ = [
    "export_onnx", "OnnxModel", "PARITY_ATOL", "TreeArrays", "sidecar", "onnx_report", "standalone_report",
    "tree_arrays",
]  # fmt: skip

PARITY_ATOL = 1e-4


class OnnxModel:
    """An ONNX Runtime session on CPU taking the same batches as the torch model; returns logits."""

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: batch})[0]
        except Exception as e:  # onnxruntime's own types: a shape or type the graph does not take
            shape = getattr(batch, "shape", None)
            raise MalvisionError(
                f"the model cannot read input of shape {shape} ({str(e).splitlines()[0]})"
            ) from None


class TreeArrays:
    """Boosted trees walked in numpy, as ``TreeEnsemble.raw_score`` walks them in torch; returns logits."""

    def __init__(self, path: Path | str) -> None:
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            self.max_depth, self.n_trees, self.per_round, self.n_features = (int(v) for v in a["shape"])
            self.feature, self.threshold, self.value = a["feature"], a["threshold"], a["value"]
            self.left, self.right, self.roots, self.bias = a["left"], a["right"], a["roots"], a["bias"]
            n = len(self.feature)
            bounds = ((self.feature, self.n_features), (self.left, n), (self.right, n), (self.roots, n))
            if not all(len(t) == n for t in (self.threshold, self.value, self.left, self.right)) or any(
                t.size and (t.min() < 0 or t.max() >= high) for t, high in bounds
            ):
                raise ValueError("indices leave the trees")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: not a tree array file ({e})") from None

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise MalvisionError(f"the trees read {self.n_features} features, got input of shape {x.shape}")
        node = np.broadcast_to(self.roots, (len(x), len(self.roots)))
        for _ in range(self.max_depth):
            go_left = np.take_along_axis(x, self.feature[node], 1) <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        if self.per_round == 1:
            raw = self.value[node].sum(1) + self.bias
            return np.stack([np.zeros_like(raw), raw], axis=1).astype(np.float32)
        logits = self.value[node].reshape(len(x), self.n_trees, self.per_round).sum(1) + self.bias
        return logits.astype(np.float32)


def sidecar(onnx_path: Path) -> Path:
    """The JSON written beside an export: parity, timing and what a scan needs of the checkpoint
    (architecture, input spec, classes, card without its id lists), tied to the checkpoint's sha256."""
    return onnx_path.with_name(onnx_path.name + ".json")


def _sha256(path: Path) -> str:
    from malvision.io import open_source

    return open_source(path).sha256


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _example(ck: Any, batch: int = 2, length: int = 4096) -> np.ndarray:
    from malvision.convert.spec import ConvertSpec

    spec = ConvertSpec.from_dict(ck.spec)
    rng = np.random.default_rng(0)
    if spec.kind in ("image", "views"):
        shape = (batch, *(spec.fixed_shape if spec.kind == "views" else (1, *spec.fixed_shape)))  # type: ignore[misc]
        return (rng.integers(0, 256, shape) / 255.0).astype(np.float32)
    if spec.kind in VECTOR_KINDS:  # around the training data, as the input BatchNorm saw it
        mean, std = (t.numpy() for t in ck.model.typical_input())
        return (mean + std * rng.normal(0.0, 1.0, (batch, len(mean)))).astype(np.float32)
    high = 257 if spec.kind == "bytes" else int(ck.vocab_size or 2)
    return rng.integers(1, high, (batch, min(length, spec.max_len))).astype(np.int64)


def export_onnx(
    checkpoint: Path | str, out: Path | str | None = None, inputs: list[np.ndarray] | None = None
) -> dict[str, Any]:
    """Export a checkpoint to ONNX (dynamic batch and length), check parity, time both backends.

    ``inputs`` are real model inputs (batches) for the parity check; random ones are added.
    Returns the report: max abs logit difference, ms per batch for torch and ONNX.
    """
    import torch

    from malvision.card import ID_LISTS
    from malvision.checkpoint import load_checkpoint
    from malvision.io import atomic_writer
    from malvision.models.trees import TreeEnsemble

    ck = load_checkpoint(checkpoint)
    if not getattr(ck.model, "exports", True):
        raise MalvisionError(f"{checkpoint}: a {ck.model_name} model has no ONNX form; it scans with torch")
    dest = Path(out) if out else Path(checkpoint).with_suffix(".onnx")
    model = ck.model.eval()
    example = torch.from_numpy(_example(ck))
    dyn = {0: "batch"} if example.is_floating_point() else {0: "batch", 1: "length"}
    try:
        with tempfile.TemporaryDirectory(prefix="malvision-export-") as scratch:
            tmp = Path(scratch) / "model.onnx"
            with warnings.catch_warnings():  # tracer notes about shape checks are not the user's concern
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    input_names=["x"],
                    output_names=["logits"],
                    dynamic_axes={"x": dyn, "logits": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
            with open(tmp, "rb") as f, atomic_writer(dest) as g:
                g.write(f.read())
    except MalvisionError:
        raise
    except Exception as e:
        raise MalvisionError(f"{checkpoint}: ONNX export failed ({str(e).splitlines()[0]})") from None
    onnx_model = OnnxModel(dest)
    batches = list(inputs or []) + [_example(ck, 4, 1000), _example(ck, 1, 3000), _example(ck, 32, 4096)]
    with torch.inference_mode():
        refs = [model(torch.from_numpy(b)).numpy() for b in batches]
    worst = _gap(refs, batches, onnx_model.run)
    if worst >= PARITY_ATOL:
        dest.unlink(missing_ok=True)
        raise MalvisionError(
            f"{checkpoint}: ONNX logits differ from torch by {worst:.2e} (limit {PARITY_ATOL})"
        )
    batch = batches[-1]  # a full scan batch, both backends warmed up by the parity pass
    with torch.inference_mode():
        t_torch = min(_timed(lambda: model(torch.from_numpy(batch))) for _ in range(5))
    t_onnx = min(_timed(lambda: onnx_model.run(batch)) for _ in range(5))
    trees = _export_trees(model, dest, refs, batches) if isinstance(model, TreeEnsemble) else None
    report = {
        "onnx": dest.name,
        "onnx_sha256": _sha256(dest),
        "checkpoint_sha256": _sha256(Path(checkpoint)),
        "max_abs_diff": worst,
        "parity_ok": True,
        "batches_checked": len(batches),
        "torch_ms_per_batch": 1000 * t_torch,
        "onnx_ms_per_batch": 1000 * t_onnx,
        "batch_size": len(batch),
        "onnx_faster": t_onnx < t_torch,
        **({"trees": trees} if trees else {}),
        "model": {
            "name": ck.model_name,
            "spec": ck.spec,
            "classes": list(ck.classes),
            "card": {k: v for k, v in (ck.extra or {}).get("card", {}).items() if k not in ID_LISTS},
        },
    }
    with atomic_writer(sidecar(dest)) as f:
        f.write(json.dumps(report, indent=2).encode())
    return report


def _gap(refs: list[np.ndarray], batches: list[np.ndarray], run: Any) -> float:
    """The largest absolute logit difference of ``run`` from torch's ``refs`` over ``batches``."""
    return max(float(np.abs(ref - run(b)).max()) for ref, b in zip(refs, batches, strict=True))


def _export_trees(
    model: Any, onnx_path: Path, refs: list[np.ndarray], batches: list[np.ndarray]
) -> dict[str, Any]:
    """Write a tree model's arrays beside its ONNX file, checked against torch's logits ``refs`` of
    ``batches`` (the last one a full scan batch, timed)."""
    from malvision.io import atomic_writer

    dest = onnx_path.with_suffix(".trees.npz")
    with atomic_writer(dest) as f:
        np.savez(f, **model.arrays())
    trees = TreeArrays(dest)
    worst = _gap(refs, batches, trees.run)
    if worst >= PARITY_ATOL:
        dest.unlink(missing_ok=True)
        raise MalvisionError(f"{dest}: numpy trees differ from torch by {worst:.2e} (limit {PARITY_ATOL})")
    t = min(_timed(lambda: trees.run(batches[-1])) for _ in range(5))
    return {"file": dest.name, "sha256": _sha256(dest), "max_abs_diff": worst, "ms_per_batch": 1000 * t}


def tree_arrays(checkpoint: Path, report: dict[str, Any]) -> TreeArrays | None:
    """The numpy trees that ``report`` (a current sidecar, from ``onnx_report``) vouches for, if any."""
    trees = report.get("trees")
    if not isinstance(trees, dict) or not isinstance(trees.get("file"), str):
        return None
    path = checkpoint.with_name(Path(trees["file"]).name)
    if not path.is_file() or _sha256(path) != trees.get("sha256"):
        return None
    return TreeArrays(path)


def standalone_report(onnx_path: Path) -> dict[str, Any]:
    """The sidecar of an export scanned without its checkpoint: it must have passed its parity check,
    describe the model and name this very file (same sha256); else a ``CheckpointError`` saying why."""
    again = f"export it again with `malvision export CHECKPOINT --onnx --out {onnx_path}`"
    try:
        report = json.loads(sidecar(onnx_path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{onnx_path}: no {sidecar(onnx_path).name} beside it; {again}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{sidecar(onnx_path)}: unreadable ({e}); {again}") from None
    if (
        not isinstance(report, dict)
        or not report.get("parity_ok")
        or not isinstance(report.get("model"), dict)
    ):
        raise CheckpointError(f"{sidecar(onnx_path)}: no parity-checked model record; {again}")
    if report.get("onnx_sha256") != _sha256(onnx_path):
        raise CheckpointError(
            f"{onnx_path}: not the file its {sidecar(onnx_path).name} was written for; {again}"
        )
    return report


def onnx_report(checkpoint: Path) -> dict[str, Any] | None:
    """The sidecar report of the ONNX export beside ``checkpoint`` if that export exists, passed its
    parity check and was made from this very checkpoint (same sha256); else None."""
    onnx_path = checkpoint.with_suffix(".onnx")
    try:
        report = json.loads(sidecar(onnx_path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not onnx_path.is_file() or not report.get("parity_ok"):
        return None
    if "onnx_sha256" in report and report["onnx_sha256"] != _sha256(onnx_path):  # the export was replaced
        return None
    return report if report.get("checkpoint_sha256") == _sha256(checkpoint) else None
