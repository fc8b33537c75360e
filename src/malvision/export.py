"""ONNX export with a parity check against torch, and the ONNX Runtime model the scanner can use."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from malvision.errors import CheckpointError, MalvisionError

__all__ = ["export_onnx", "OnnxModel", "PARITY_ATOL"]

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
        return self.session.run(None, {self.input_name: batch})[0]


def _example(ck: Any, batch: int = 2, length: int = 4096) -> np.ndarray:
    from malvision.convert.spec import ConvertSpec

    spec = ConvertSpec.from_dict(ck.spec)
    rng = np.random.default_rng(0)
    if spec.kind == "image":
        return (rng.integers(0, 256, (batch, 1, spec.image_size, spec.image_size)) / 255.0).astype(np.float32)
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

    from malvision.checkpoint import load_checkpoint
    from malvision.io import atomic_writer

    ck = load_checkpoint(checkpoint)
    dest = Path(out) if out else Path(checkpoint).with_suffix(".onnx")
    model = ck.model.eval()
    example = torch.from_numpy(_example(ck))
    dyn = {0: "batch"} if example.ndim == 4 else {0: "batch", 1: "length"}
    tmp = dest.with_name(f".{dest.name}.export")
    try:
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
    finally:
        tmp.unlink(missing_ok=True)
    onnx_model = OnnxModel(dest)
    batches = list(inputs or []) + [_example(ck, 4, 1000), _example(ck, 1, 3000)]
    worst = 0.0
    t_torch = t_onnx = 0.0
    for b in batches:
        with torch.inference_mode():
            t = time.perf_counter()
            ref = model(torch.from_numpy(b)).numpy()
            t_torch += time.perf_counter() - t
        t = time.perf_counter()
        got = onnx_model.run(b)
        t_onnx += time.perf_counter() - t
        worst = max(worst, float(np.abs(ref - got).max()))
    report = {
        "onnx": str(dest),
        "max_abs_diff": worst,
        "parity_ok": worst < PARITY_ATOL,
        "torch_ms_per_batch": 1000 * t_torch / len(batches),
        "onnx_ms_per_batch": 1000 * t_onnx / len(batches),
        "batches": len(batches),
    }
    if not report["parity_ok"]:
        dest.unlink(missing_ok=True)
        raise MalvisionError(
            f"{checkpoint}: ONNX logits differ from torch by {worst:.2e} (limit {PARITY_ATOL})"
        )
    return report
