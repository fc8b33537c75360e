"""Attribution to a target class's log-odds: integrated gradients, a plain gradient, Grad-CAM, and
occlusion for models with no gradient.

Image models: integrated gradients (Sundararajan et al. 2017) on the S x S model image from a black
image (all-zero bytes), or Grad-CAM on the model's ``cam_layer()``. Sequence models (bytes, opcodes):
integrated gradients in embedding space (``embed`` then ``forward_embedded``; baseline: the padding
embedding, zeros), summed over the embedding: one value per position. Feature models: integrated
gradients over the named features from an average training file (``typical_input``); fitted models
(trees) have no gradient, so each feature is measured by occlusion, the change in log-odds when that
feature alone takes its typical value. The model is never edited: gradients are taken with
``torch.autograd.grad`` with respect to the input only, so concurrent explanations do not interfere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from malvision.convert.batch import batch
from malvision.convert.spec import VECTOR_KINDS
from malvision.errors import MalvisionError

__all__ = ["METHODS", "DEFAULT_STEPS", "attribute", "methods_for"]

METHODS = ("ig", "gradient", "gradcam")
DEFAULT_STEPS = 32
BATCH_ELEMENTS = 2**21  # interpolation steps per batch: input elements per forward pass, at most

_HOOK_LOCK = threading.Lock()  # Grad-CAM registers a forward hook on a shared model


def _log_odds(logits: Any, target: int) -> Any:
    """log p_t - log(1 - p_t) per row: the target's logit against the log-sum-exp of the others."""
    import torch

    if logits.shape[1] == 1:  # a single-logit model: the logit is the log-odds of class 1
        return logits[:, 0] if target == 1 else -logits[:, 0]
    others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=1)
    return logits[:, target] - torch.logsumexp(others, dim=1)


def _integrated(f: Callable[[Any], Any], x: Any, baseline: Any, steps: int, batch: int) -> Any:
    """Integrated gradients of scalar-per-row ``f`` from ``baseline`` to ``x`` (midpoint rule)."""
    import torch

    total = torch.zeros_like(x)
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    for i in range(0, steps, batch):
        a = alphas[i : i + batch].view(-1, *([1] * (x.dim() - 1)))
        xs = (baseline + a * (x - baseline)).requires_grad_(True)
        (g,) = torch.autograd.grad(f(xs).sum(), xs)
        total += g.sum(0, keepdim=True)
    return (x - baseline) * total / steps


def _gradient(f: Callable[[Any], Any], x: Any, baseline: Any) -> Any:
    """Gradient x (input - baseline) at the input: one backward pass."""
    import torch

    xs = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xs).sum(), xs)
    return (x - baseline) * g


def _gradcam(model: Any, run: Callable[[], Any], target: int, out_len: tuple[int, ...]) -> Any:
    """Grad-CAM: ReLU of the channel-weighted ``cam_layer`` activation, resized to ``out_len``."""
    import torch
    import torch.nn.functional as F

    layer = model.cam_layer()
    if layer is None:
        raise MalvisionError(f"model {type(model).__name__} has no conv layer for Grad-CAM; use --method ig")
    acts: list[Any] = []
    me = threading.get_ident()  # a scan running on another thread must not feed this hook

    def keep(_m: Any, _i: Any, o: Any) -> None:
        if threading.get_ident() == me:
            acts.append(o)

    with _HOOK_LOCK:
        handle = layer.register_forward_hook(keep)
        try:
            logits = run()
        finally:
            handle.remove()
    a = acts[-1]
    (g,) = torch.autograd.grad(_log_odds(logits, target).sum(), a)
    weights = g.mean(dim=tuple(range(2, a.dim())), keepdim=True)
    cam = torch.relu((weights * a).sum(1, keepdim=True))
    mode = "bilinear" if a.dim() == 4 else "linear"
    return F.interpolate(cam, size=out_len, mode=mode, align_corners=False)[0, 0]


def attribute(
    model: Any, x: np.ndarray, target: int, method: str = "ig", steps: int = DEFAULT_STEPS
) -> np.ndarray:
    """Attribution to the target's log-odds: (S, S) for an image, one value per position for ids."""

    if method not in METHODS:
        raise MalvisionError(f"unknown explanation method {method!r}; use one of {', '.join(METHODS)}")
    if steps < 1:
        raise MalvisionError(f"--steps must be positive, got {steps}")
    was_training = model.training
    model.eval()  # batch norm must use its running statistics; the mode is restored below
    try:
        return _attribute(model, x, target, method, steps)
    finally:
        model.train(was_training)


def methods_for(model: Any, kind: str) -> tuple[str, ...]:
    """The methods ``attribute`` takes for ``model`` (input ``kind``): Grad-CAM needs a conv layer and
    an image or sequence input (a fitted model measures by occlusion whichever is named)."""
    convolutional = getattr(model, "cam_layer", lambda: None)() is not None
    if kind not in VECTOR_KINDS and convolutional:
        return METHODS
    return tuple(m for m in METHODS if m != "gradcam")


def _occlusion(f: Any, x: Any, base: Any) -> Any:
    """Per feature of a (1, F) ``x``: ``f(x)`` minus ``f`` with that one feature set to ``base``'s."""
    import torch

    n = x.shape[1]
    rows = x.repeat(n, 1)
    rows[torch.arange(n), torch.arange(n)] = base[0]
    with torch.no_grad():
        return f(x)[0] - f(rows)


def _attribute(model: Any, x: np.ndarray, target: int, method: str, steps: int) -> np.ndarray:
    import torch

    with torch.enable_grad():
        if x.dtype == np.float32:  # a PE feature vector
            return _feature_attribution(model, x, target, method, steps)
        if x.ndim >= 2:  # an image (or views: the byte plot and its entropy plot)
            return _image_attribution(model, x, target, method, steps)
        return _sequence_attribution(model, x, target, method, steps)


def _feature_attribution(model: Any, x: np.ndarray, target: int, method: str, steps: int) -> np.ndarray:
    """From the average training file; by occlusion for a fitted model, which has no gradient."""
    import torch

    from malvision.models import is_fitted

    if method == "gradcam":
        raise MalvisionError("gradcam needs a convolutional model; use --method ig or gradient")
    xt = torch.from_numpy(batch([x]))
    base = model.typical_input()[0][None]

    def fv(xs: Any) -> Any:
        return _log_odds(model(xs), target)

    if is_fitted(model):
        return _occlusion(fv, xt, base).numpy()
    attr = _integrated(fv, xt, base, steps, steps) if method == "ig" else _gradient(fv, xt, base)
    return attr[0].detach().numpy()


def _image_attribution(model: Any, x: np.ndarray, target: int, method: str, steps: int) -> np.ndarray:
    import torch

    xt = torch.from_numpy(batch([x]))

    def f(xs: Any) -> Any:
        return _log_odds(model(xs), target)

    if method == "gradcam":
        return _gradcam(model, lambda: model(xt), target, tuple(x.shape[-2:])).detach().numpy()
    base = torch.zeros_like(xt)
    per_pass = max(1, min(steps, BATCH_ELEMENTS // xt[0, 0].numel()))
    attr = _integrated(f, xt, base, steps, per_pass) if method == "ig" else _gradient(f, xt, base)
    return attr[0].sum(0).detach().numpy()  # (S, S): the channels of views add up


def _sequence_attribution(model: Any, x: np.ndarray, target: int, method: str, steps: int) -> np.ndarray:
    import torch

    from malvision.models import is_fitted

    ids = torch.from_numpy(batch([x]))
    if is_fitted(model):  # n-grams: each token's exact share of the target's logit (no gradient)
        if method == "gradcam":
            raise MalvisionError("gradcam needs a convolutional model; use --method ig or gradient")
        with torch.no_grad():
            return model.token_attribution(ids[0], target).numpy()
    mask = model.padding_mask(ids)
    if method == "gradcam":
        return _gradcam(model, lambda: model(ids), target, (ids.shape[1],)).detach().numpy()
    e = model.embed(ids).detach()

    def fe(es: Any) -> Any:
        m = None if mask is None else mask.expand(es.shape[0], -1)
        return _log_odds(model.forward_embedded(es, m), target)

    base = torch.zeros_like(e)
    per_pass = max(1, min(steps, BATCH_ELEMENTS // max(1, e[0].numel())))
    attr = _integrated(fe, e, base, steps, per_pass) if method == "ig" else _gradient(fe, e, base)
    return attr[0].sum(-1).detach().numpy()
