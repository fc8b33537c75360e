"""The vanishing-gradient experiment: how much of the loss gradient reaches early hidden states.

For recurrent models read out at their last step (``pool="last"``), the gradient of the loss with
respect to the hidden state h_t must travel back through T-1-t recurrent steps. For a vanilla RNN it
shrinks geometrically with that distance; LSTM and GRU carry it further through their gates. We
measure mean ||dL/dh_t|| over a batch of real sequences at initialisation and after training, and
test accuracy as the sequence the model must read grows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from malvision.checkpoint import load_checkpoint
from malvision.data.loader import collate, make_loader
from malvision.errors import MalvisionError
from malvision.evaluate.plots import plot_gradients
from malvision.io import atomic_writer
from malvision.models import create_model
from malvision.train import TrainConfig, fit, predict
from malvision.train.loop import check_same_settings

__all__ = ["gradient_norms", "run_gradients"]


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Mean over the batch of ||dL/dh_t|| for each time step t (the recurrent layer's output)."""
    model.eval()  # no dropout: the measure is of the function, not of a random mask
    model.zero_grad(set_to_none=True)
    logits, states = model.forward_sequence(x)
    states.retain_grad()
    nn.functional.cross_entropy(logits, y).backward()
    assert states.grad is not None
    # in float64: squared float32 gradients under ~1e-19 underflow to 0, and the curves would drop off a cliff
    return states.grad.double().norm(dim=2).mean(dim=0).detach().numpy()


def _probe_batch(
    ds: Any, idx: np.ndarray, seq_len: int, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``n`` test sequences at least ``seq_len`` long, cut to exactly ``seq_len``."""
    long_enough = idx[np.asarray(ds.lengths)[idx] >= seq_len]
    rng = np.random.default_rng(seed)
    pick = rng.choice(long_enough, size=min(n, len(long_enough)), replace=False)
    return collate([(ds[int(i)][0][:seq_len], ds[int(i)][1]) for i in pick])


def _check_lengths(ds: Any, test_idx: np.ndarray, seq_len: int, lengths: Sequence[int]) -> None:
    """Refuse lengths the data cannot give: past the cache's cut, or a probe no test sequence reaches."""
    cut = ds.spec.max_len
    if over := sorted(n for n in {*lengths, seq_len} if n > cut):
        raise MalvisionError(
            f"{ds.path}: its sequences are cut at {cut} opcodes, so lengths {over} would train on the cut; "
            f"lower --lengths/--seq-len or rebuild the cache with --max-len {max(over)}"
        )
    longest = int(np.asarray(ds.lengths)[test_idx].max()) if len(test_idx) else 0
    if longest < seq_len:
        raise MalvisionError(
            f"no test sequence is {seq_len} opcodes long (the longest: {longest}); lower --seq-len"
        )


def run_gradients(
    ds: Any,
    models: Sequence[str],
    out_dir: Path | str,
    *,
    seq_len: int = 256,
    lengths: Sequence[int] = (16, 64, 256, 1024),
    epochs: int = 4,
    hidden: int = 64,
    max_train: int | None = 3000,
    seed: int = 0,
    threads: int | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure gradient norms (init, trained) at ``seq_len`` and accuracy for each of ``lengths``."""
    from malvision.data.splits import stratified_holdout, train_val_split

    out = Path(out_dir)
    say = on_progress or (lambda s: None)
    train_all, test_idx = stratified_holdout(
        ds.labels, test_size=0.2, random_state=seed, names=list(ds.classes)
    )
    rng = np.random.default_rng(seed)
    if max_train is not None and len(train_all) > max_train:
        train_all = np.sort(rng.choice(train_all, size=max_train, replace=False))
    tr, va = train_val_split(np.asarray(train_all), ds.labels, val_size=0.15, random_state=seed)
    _check_lengths(ds, np.asarray(test_idx), seq_len, lengths)
    curves: dict[str, dict[str, np.ndarray]] = {}
    acc_by_len: dict[str, dict[int, float]] = {}
    for name in models:
        kwargs = {"hidden": hidden, "pool": "last"}
        base = TrainConfig(
            model=name, model_kwargs=kwargs, epochs=epochs, seed=seed, patience=epochs, threads=threads
        )
        curves[name], acc_by_len[name] = {}, {}
        for length in sorted(set(lengths) | {seq_len}):
            say(f"{name}: training on the first {length} opcodes")
            cfg = TrainConfig(**{**base.__dict__, "max_len": length})
            run = out / name / f"len{length}"
            check_same_settings(run, cfg, ds=ds)  # a finished or cut-off run of other settings is not reused
            res = fit(ds, tr, va, cfg, run, resume=True)
            ck = load_checkpoint(res.checkpoint)
            ds.read_as(ck.spec)
            probs, labels = predict(ck.model, make_loader(ds, test_idx, 64, shuffle=False, max_len=length))
            acc_by_len[name][length] = float((probs.argmax(1) == labels).mean())
            if length == seq_len:
                x, y = _probe_batch(ds, np.asarray(test_idx), seq_len, 64, seed)
                torch.manual_seed(seed)
                init = create_model(
                    name, in_kind=ck.in_kind, n_classes=ck.n_classes, vocab_size=ck.vocab_size, **kwargs
                )
                curves[name]["init"] = gradient_norms(init, x, y)
                curves[name]["trained"] = gradient_norms(ck.model, x, y)
    plot_gradients(
        curves, acc_by_len, out / "gradients.png", f"{', '.join(models)}: last-step readout, T={seq_len}"
    )
    summary = {
        "seq_len": seq_len,
        "grad_ratio_first_over_last": {
            n: {s: float(c[s][0] / max(c[s][-1], 1e-30)) for s in c} for n, c in curves.items()
        },
        "accuracy_by_length": acc_by_len,
        "n_train": len(tr),
        "n_test": len(test_idx),
        "epochs": epochs,
        "hidden": hidden,
    }
    with atomic_writer(out / "gradients.json") as f:
        f.write(json.dumps(summary, indent=2).encode())
    return summary
