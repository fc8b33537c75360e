"""The gradient loop of one fit: optimiser, epochs, validation, ``best.pt`` and a resumable ``last.pt``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from malvision.calibration import softmax
from malvision.checkpoint import load_checkpoint, rng_after_save, save_checkpoint
from malvision.convert.spec import input_name
from malvision.data.loader import SizeBucketSampler
from malvision.errors import MalvisionError
from malvision.evaluate.metrics import classification_metrics
from malvision.io import atomic_writer
from malvision.train.config import TrainConfig, get_lr
from malvision.train.predict import predict_logits

__all__ = ["GradientRun", "RESUME_FREE", "check_same_settings", "resumable", "write_config", "write_history"]


@dataclass
class _State:
    """Where a gradient run stands; saved in ``last.pt`` so a run resumes where it stopped."""

    next_epoch: int = 0
    best_f1: float = -1.0
    best_epoch: int = -1
    stale: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metrics: dict[str, Any] = field(default_factory=dict)


class GradientRun:
    """One gradient-trained fit: optimiser, loaders, the epoch loop's steps and its checkpoints."""

    def __init__(
        self,
        model: nn.Module,
        ds: Any,
        cfg: TrainConfig,
        out: Path,
        meta: dict[str, Any],
        distributed: bool,
        rank: int,
    ) -> None:
        self.model, self.ds, self.cfg, self.meta = model, ds, cfg, meta
        self.distributed, self.rank = distributed, rank
        self.train_model: nn.Module = nn.parallel.DistributedDataParallel(model) if distributed else model
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.last_path, self.best_path, self.history_path = (
            out / "last.pt",
            out / "best.pt",
            out / "history.csv",
        )
        self.state = _State()
        self.train_loader: DataLoader
        self.val_loader: DataLoader
        self.loss_fn: nn.Module

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def restore(self) -> None:
        """Model, optimiser and loop state from ``last.pt`` (refused if it was trained on other data)."""
        ck = resumable(self.last_path, self.ds)
        self.model.load_state_dict(ck.model.state_dict())
        saved = (ck.extra or {}).get("train_state", {})
        if ck.optimizer_state:
            self.opt.load_state_dict(ck.optimizer_state)
        self.state = _State(
            next_epoch=int(saved.get("epoch", -1)) + 1,
            best_f1=float(saved.get("best_f1", -1.0)),
            best_epoch=int(saved.get("best_epoch", -1)),
            stale=int(saved.get("stale", 0)),
            history=list(saved.get("history", [])),
            best_metrics=dict(saved.get("best_metrics", {})),
        )
        rng = saved.get("rng")
        if isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor):
            # where the uninterrupted run stood: dropout's draws and the shuffle go on as they would have
            torch.set_rng_state(rng["torch"])
            if isinstance(rng.get("loader"), torch.Tensor) and self.train_loader.generator is not None:
                self.train_loader.generator.set_state(rng["loader"])
        else:  # a last.pt written before the states were kept
            torch.manual_seed(self.cfg.seed + self.state.next_epoch)

    def train_epoch(self, epoch: int, on_step: Callable[[int, int], None] | None) -> float:
        """One pass over the training rows; the mean training loss."""
        cfg, loader = self.cfg, self.train_loader
        if self.distributed:
            loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        elif isinstance(loader.batch_sampler, SizeBucketSampler):
            loader.batch_sampler.epoch = epoch
        total = self.steps_per_epoch * cfg.epochs
        step = epoch * self.steps_per_epoch
        self.train_model.train()
        total_loss, seen = 0.0, 0
        for x, y in loader:
            for group in self.opt.param_groups:
                group["lr"] = get_lr(step, total, cfg.lr, cfg.warmup_frac)
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.train_model(x), y)
            if not torch.isfinite(loss):
                raise MalvisionError(f"training diverged at epoch {epoch} (loss {loss.item()}); lower --lr")
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.opt.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
            step += 1
            if on_step is not None and self.rank == 0:
                on_step(step, total)
        if self.distributed:  # every process's rows, not rank 0's share alone
            both = torch.tensor([total_loss, float(seen)], dtype=torch.float64)
            dist.all_reduce(both)
            total_loss, seen = float(both[0]), int(both[1])
        return total_loss / max(seen, 1)

    def validate_and_save(self, epoch: int, train_loss: float, seconds: float) -> dict[str, float]:
        """Score the validation rows; save ``best.pt`` on a better macro-F1, always ``last.pt``."""
        st = self.state
        logits, labels = predict_logits(self.model, self.val_loader)
        m = classification_metrics(labels, softmax(logits), list(self.ds.classes))
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": float(
                nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
            ),
            "val_accuracy": m["accuracy"],
            "val_macro_f1": m["macro_f1"],
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": seconds,
        }
        st.history.append(row)
        if m["macro_f1"] > st.best_f1 or self.cfg.keep == "last":
            st.best_f1, st.best_epoch, st.stale, st.best_metrics = m["macro_f1"], epoch, 0, m
            save_checkpoint(self.best_path, self.model, metrics=m, **self.meta)
        else:
            st.stale += 1
        st.next_epoch = epoch + 1
        train_state = dict(
            epoch=epoch,
            best_f1=st.best_f1,
            best_epoch=st.best_epoch,
            stale=st.stale,
            history=st.history,
            best_metrics=st.best_metrics,
            rng=self._rng_states(),
        )
        save_checkpoint(
            self.last_path,
            self.model,
            optimizer=self.opt,
            epoch=epoch,
            extra={"train_state": train_state},
            **self.meta,
        )
        write_history(self.history_path, st.history)
        return row

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """The random states the next epoch starts from (torch's once ``last.pt`` is written, the training
        shuffle's), so that a run resumed from ``last.pt`` trains as the uninterrupted one would."""
        states = {"torch": rng_after_save(**self.meta)}
        generator = getattr(self, "train_loader", None) and self.train_loader.generator
        if generator is not None:
            states["loader"] = generator.get_state()
        return states

    def share_stale(self) -> None:
        """Under torchrun, every rank stops when rank 0 (which validates) says so."""
        if self.distributed:
            flag = torch.tensor([self.state.stale], dtype=torch.long)
            dist.broadcast(flag, 0)
            self.state.stale = int(flag.item())


def write_config(out: Path, cfg: TrainConfig) -> None:
    with atomic_writer(out / "config.json") as f:
        f.write(json.dumps(asdict(cfg), indent=2).encode())


RESUME_FREE = ("threads", "epochs", "patience")  # what a resumed run may change: how long it goes on


def config_changes(
    saved: dict[str, Any], cfg: TrainConfig | dict[str, Any], free: tuple[str, ...] = ()
) -> list[str]:
    """The settings of ``cfg`` (or its ``asdict``; bar ``free``) that differ from ``saved`` (a written
    ``asdict`` of one), as ``name old -> new``; a setting added since ``saved`` was written had its
    default then."""
    defaults = json.loads(json.dumps(asdict(TrainConfig())))
    # as written to JSON: tuples are lists
    new = json.loads(json.dumps(cfg if isinstance(cfg, dict) else asdict(cfg)))
    return [
        f"{k} {saved.get(k, defaults.get(k))!r} -> {v!r}"
        for k, v in new.items()
        if k not in free and saved.get(k, defaults.get(k)) != v
    ]


def write_data_stamp(out: Path, ds: Any) -> None:
    """``data.json``: the cache a run trains on (manifest and conversion), what a resume must match."""
    with atomic_writer(out / "data.json") as f:
        f.write(json.dumps(_data_stamp(ds), indent=2).encode())


def _data_stamp(ds: Any) -> dict[str, Any]:
    return {"manifest_hash": ds.manifest_hash, "conversion": getattr(ds, "conversion", None)}


def check_same_settings(
    out: Path, cfg: TrainConfig, free: tuple[str, ...] = ("threads",), ds: Any = None
) -> None:
    """Refuse, in one line naming the differences, to reuse or continue ``out`` when its ``config.json``
    holds other settings than ``cfg`` (bar those in ``free``), or its ``data.json`` another cache than
    ``ds`` (the same files converted another way: another size, kind or cut); what a folder lacks passes."""
    saved = _read_stamp(out / "config.json")
    if saved is not None and (diff := config_changes(saved, cfg, free)):
        raise MalvisionError(
            f"{out} holds a run of other settings ({'; '.join(diff)}); pick another folder or delete it"
        )
    saved = _read_stamp(out / "data.json") if ds is not None else None
    if saved is not None:
        now = json.loads(json.dumps(_data_stamp(ds)))
        if any(saved.get(k) != now.get(k) for k in saved):
            raise MalvisionError(f"{out} holds a run on another cache; pick another folder or delete it")


def _read_stamp(path: Path) -> dict[str, Any] | None:
    """A run folder's JSON stamp, None where it has none; unreadable is one line."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise MalvisionError(f"{path}: unreadable ({e}); pick another folder or delete it") from None


def resumable(path: Path, ds: Any) -> Any:
    """The checkpoint a run resumes from, refused in one line if it was trained on other data."""
    ck = load_checkpoint(path)
    if ck.manifest_hash and ds.manifest_hash and ck.manifest_hash != ds.manifest_hash:
        raise MalvisionError(f"{path} was trained on other data; pick another run folder or delete it")
    trained, cached = input_name(ck.spec), input_name(ds.spec.to_dict())
    if trained != cached:
        raise MalvisionError(
            f"{path} was trained on {trained} input, this cache is {cached}; pick another run folder or delete it"
        )
    return ck


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    keys = list(history[0])
    with atomic_writer(path) as f:
        f.write((",".join(keys) + "\n").encode())
        for row in history:
            f.write((",".join(f"{row[k]:.6g}" for k in keys) + "\n").encode())
