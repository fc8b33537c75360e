"""Checkpoints: weights plus everything needed to rebuild and feed the model; the only ``torch.load``.

A checkpoint holds only tensors and plain containers (dict, list, str, int, float, bool, None):
the state dict, the model's registry name and kwargs, the conversion spec, class names, seed, dataset
manifest hash, metrics and, for resuming, optimizer/scheduler state and epoch. It is written
atomically and read with ``torch.load(weights_only=True)``: a file that would run code is refused.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from malvision.errors import CheckpointError, InputError, MalvisionError
from malvision.io import atomic_writer, check_file, deferred_interrupts

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "save_checkpoint", "load_checkpoint"]

FORMAT = "malvision-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("model", "state_dict", "spec", "classes", "seed")
_MODEL_KEYS = ("name", "kwargs", "in_kind", "n_classes", "vocab_size")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (CPU, eval mode) and its metadata."""

    path: Path
    model: nn.Module
    model_name: str
    model_kwargs: dict[str, Any]
    in_kind: str
    n_classes: int
    vocab_size: int | None
    spec: dict[str, Any]
    classes: list[str]
    seed: int
    manifest_hash: str | None = None
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    epoch: int | None = None
    format_version: int = FORMAT_VERSION
    info: dict[str, Any] = field(default_factory=dict)

    def convert_spec(self) -> Any:
        """The stored conversion settings as a ``ConvertSpec``."""
        from malvision.convert.spec import ConvertSpec

        try:
            return ConvertSpec.from_dict(self.spec)
        except MalvisionError as e:
            raise CheckpointError(f"{self.path}: {e}") from None

    def restore_training(self, optimizer: Any = None, scheduler: Any = None) -> int:
        """Load optimizer/scheduler state saved for resuming; returns the epoch to start from."""
        if self.epoch is None:
            raise CheckpointError(f"{self.path}: holds no training state; save it with epoch=... to resume")
        for what, obj, state in (
            ("optimizer", optimizer, self.optimizer_state),
            ("scheduler", scheduler, self.scheduler_state),
        ):
            if obj is None:
                continue
            if state is None:
                raise CheckpointError(f"{self.path}: holds no {what} state to resume from")
            try:
                obj.load_state_dict(state)
            except (ValueError, KeyError, RuntimeError, TypeError) as e:
                raise CheckpointError(
                    f"{self.path}: {what} state does not fit ({_first_line(e)}); "
                    "resume with the same optimizer settings"
                ) from None
        return self.epoch + 1


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any, where: str) -> Any:
    """``value`` as tensors and plain containers only (numpy scalars/arrays and paths converted)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    for plain in (bool, int, float, str):  # subclasses (TorchVersion, IntEnum) pickle as their class
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise CheckpointError(f"cannot store {where}: key {k!r} is not a str or int")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, list | tuple):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise CheckpointError(
        f"cannot store {where}: {type(value).__name__} is not a tensor or plain value "
        "(dict, list, str, number)"
    )


def _state_of(obj: Any, where: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    state = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(state, Mapping):
        raise CheckpointError(f"cannot store {where}: expected an object with state_dict() or a dict")
    return _plain(state, where)


def _take_sizes(model: torch.nn.Module, state: Mapping[str, Any]) -> torch.nn.Module:
    """``model`` with the buffers whose size only a fit decides (a part's ``take_sizes``) sized as in
    ``state``, so the shape check compares the rest."""
    for name, part in model.named_modules():
        if callable(take := getattr(part, "take_sizes", None)):
            take(state, f"{name}." if name else "")
    return model


def _shape_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, Any]) -> str | None:
    """A short description of how state dict ``got`` differs from ``expected``, or None."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {tuple(got[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and (not isinstance(got[k], torch.Tensor) or got[k].shape != v.shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts) or None


def save_checkpoint(
    path: Path | str,
    model: nn.Module,
    *,
    model_name: str,
    model_kwargs: dict[str, Any],
    in_kind: str,
    n_classes: int,
    vocab_size: int | None,
    spec: dict[str, Any],
    classes: list[str],
    seed: int,
    manifest_hash: str | None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
    epoch: int | None = None,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically; returns the path.

    ``optimizer`` / ``scheduler`` (objects with ``state_dict()`` or their state dicts) and ``epoch``
    are stored for resuming. The model must be what ``create_model(model_name, ...)`` rebuilds.
    """
    from malvision.models import create_model

    dest = Path(path)
    if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{dest}: classes must be a list of names")
    if len(classes) != n_classes and not (n_classes == 1 and len(classes) == 2):
        raise CheckpointError(f"{dest}: {len(classes)} class names for a model with {n_classes} outputs")
    try:
        reference = create_model(
            model_name, in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size, **model_kwargs
        )
    except MalvisionError as e:
        raise CheckpointError(f"{dest}: cannot describe the model: {e}") from None
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if diff := _shape_mismatch(_take_sizes(reference, state).state_dict(), state):
        raise CheckpointError(f"{dest}: model does not match {model_name!r} with the given kwargs ({diff})")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": _plain(
            {
                "name": model_name,
                "kwargs": dict(model_kwargs),
                "in_kind": in_kind,
                "n_classes": n_classes,
                "vocab_size": getattr(reference, "vocab_size", vocab_size),
            },
            "model",
        ),
        "state_dict": state,
        "spec": _plain(dict(spec), "spec"),
        "classes": list(classes),
        "seed": int(seed),
        "manifest_hash": manifest_hash,
        "metrics": _plain(metrics, "metrics"),
        "extra": _plain(extra, "extra"),
        "optimizer": _state_of(optimizer, "optimizer"),
        "scheduler": _state_of(scheduler, "scheduler"),
        "epoch": None if epoch is None else int(epoch),
        "info": {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "malvision": _version(),
        },
    }
    payload = _plain(payload, "checkpoint")
    try:
        with deferred_interrupts(), atomic_writer(dest) as f:  # a checkpoint is written whole or not at all
            torch.save(payload, f)
    except OSError as e:
        raise CheckpointError(f"{dest}: cannot write checkpoint ({e.strerror or e})") from None
    return dest


def rng_after_save(
    model_name: str,
    model_kwargs: dict[str, Any],
    in_kind: str,
    n_classes: int,
    vocab_size: int | None,
    **_: Any,
) -> torch.Tensor:
    """The torch random state ``save_checkpoint`` of such a model will leave behind (it builds a reference
    model to check the weights' shapes, which draws initial weights), the global state left as it is: what
    a run resumed from that checkpoint must start from to go on as the uninterrupted one."""
    from malvision.models import create_model

    before = torch.get_rng_state()
    create_model(model_name, in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size, **model_kwargs)
    after = torch.get_rng_state()
    torch.set_rng_state(before)
    return after


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("malvision")
    except PackageNotFoundError:  # a source checkout that is not installed
        return "unknown"


def _read(p: Path) -> Any:
    """torch.load with weights_only=True; every failure becomes a one-line ``CheckpointError``."""
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is never unpickled
        with open(p, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            raise CheckpointError(
                f"{p}: truncated or damaged checkpoint (incomplete zip archive); save it again"
            )
        raise CheckpointError(f"{p}: not a malvision checkpoint (not a PyTorch zip archive)")
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"{p}: truncated or damaged checkpoint ({_first_line(e)}); save it again"
        ) from None
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise CheckpointError(f"{p}: not a malvision checkpoint (a zip archive without PyTorch data)")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "unsupported global" in str(e).lower():
            raise CheckpointError(
                f"{p}: refused: it holds Python objects that could run code on load (not a malvision "
                "checkpoint, or an unsafe one); only load checkpoints made by malvision"
            ) from None
        raise CheckpointError(f"{p}: not a malvision checkpoint ({_first_line(e)})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError, IndexError) as e:
        raise CheckpointError(
            f"{p}: truncated, corrupt or not a checkpoint ({_first_line(e)}); save it again"
        ) from None


def _check_layout(p: Path, obj: Any) -> Any:
    """Refuse, in one line, what is not a whole checkpoint of this format, and conversion settings that
    are bad or hostile (a billion-pixel image side) before anyone converts with them; the ``ConvertSpec``."""
    from malvision.convert.spec import ConvertSpec

    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a malvision checkpoint (no {FORMAT!r} header)")
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {version!r} is not supported (this malvision reads "
            f"{FORMAT_VERSION}); use a matching malvision version"
        )
    if missing := [k for k in _REQUIRED if k not in obj]:
        raise CheckpointError(f"{p}: incomplete checkpoint, missing {', '.join(missing)}")
    meta = obj["model"]
    if not isinstance(meta, dict) or (bad := [k for k in _MODEL_KEYS if k not in meta]):
        raise CheckpointError(f"{p}: incomplete model description, missing {', '.join(bad) or 'all'}")
    if not isinstance(meta["kwargs"], dict) or not isinstance(obj["state_dict"], dict):
        raise CheckpointError(f"{p}: malformed checkpoint (model kwargs or state dict is not a mapping)")
    # Before the model: an old input version gets its own message, not one of mismatched weights.
    if not isinstance(obj["spec"], dict):
        raise CheckpointError(f"{p}: malformed metadata (the conversion spec is not a mapping)")
    try:
        return ConvertSpec.from_dict(obj["spec"])
    except MalvisionError as e:
        raise CheckpointError(f"{p}: bad conversion settings ({e})") from None


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read a checkpoint safely and rebuild its model (CPU, eval mode) via ``create_model``."""
    from malvision.models import create_model, input_kwargs

    p = Path(path)
    try:
        check_file(p)
    except InputError as e:
        raise CheckpointError(str(e)) from None
    if p.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{p}: an ONNX export, not a checkpoint; this needs the .pt it was exported from "
            "(scan reads the export alone)"
        )
    obj = _read(p)
    spec = _check_layout(p, obj)
    meta, kwargs, state = obj["model"], obj["model"]["kwargs"], obj["state_dict"]
    try:
        kwargs = input_kwargs(meta["name"], spec, kwargs)
        model = create_model(
            meta["name"],
            in_kind=meta["in_kind"],
            n_classes=meta["n_classes"],
            vocab_size=meta["vocab_size"],
            **kwargs,
        )
    except MalvisionError as e:
        raise CheckpointError(f"{p}: cannot rebuild the model ({e})") from None
    except TypeError as e:  # e.g. non-string kwarg names
        raise CheckpointError(f"{p}: cannot rebuild the model ({_first_line(e)})") from None
    if diff := _shape_mismatch(_take_sizes(model, state).state_dict(), state):
        raise CheckpointError(
            f"{p}: weights do not fit model {meta['name']!r} ({diff}); the checkpoint is of another "
            "architecture or damaged"
        )
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, MalvisionError) as e:
        raise CheckpointError(f"{p}: cannot load weights ({_first_line(e)})") from None
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in state.values()):
        raise CheckpointError(f"{p}: weights contain NaN or infinity; the training run diverged")
    model.eval()
    classes = obj["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{p}: malformed class list")
    seed = obj["seed"]
    epoch = obj.get("epoch")
    if not isinstance(seed, int) or (epoch is not None and not isinstance(epoch, int)):
        raise CheckpointError(f"{p}: malformed metadata (seed or epoch)")
    return Checkpoint(
        path=p,
        model=model,
        model_name=meta["name"],
        model_kwargs=dict(kwargs),
        in_kind=meta["in_kind"],
        n_classes=meta["n_classes"],
        vocab_size=meta["vocab_size"],
        spec=obj["spec"],
        classes=list(classes),
        seed=seed,
        manifest_hash=obj.get("manifest_hash"),
        metrics=obj.get("metrics"),
        extra=obj.get("extra"),
        optimizer_state=obj.get("optimizer"),
        scheduler_state=obj.get("scheduler"),
        epoch=epoch,
        format_version=obj["format_version"],
        info=obj.get("info") or {},
    )
