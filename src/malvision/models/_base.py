"""The two model protocols: networks trained by gradient steps, and models fitted in one call.

``MalvisionModel`` (networks) shares timm's surface: ``embed`` / ``forward_embedded`` (the gradient
seam), ``forward_features``, ``forward_head`` and ``reset_classifier``. Sequence models embed ids first,
so gradients can start at the embedding, as secml_malware's basee2e.py does.

``FittedModel`` (trees, linear models) learns from all its training rows in one ``fit`` call and then
scores like any module: ``forward`` gives logits, so it saves, loads and exports like a network. It has
no gradient, no embedding and no classifier to swap; explanations measure its features by occlusion
against ``typical_input``.

Input kinds: "image" is a float (B, 1, S, S) tensor in [0, 1] ("views": (B, 2, S, S), the byte plot and
its entropy plot); "bytes" and "opcodes" are int64 (B, L)
ids with 0 as padding (right-padded); "features" is a float (B, F) PE feature vector, and the other
``VECTOR_KINDS`` are float (B, F) rows too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from malvision.convert.spec import VECTOR_KINDS
from malvision.errors import ModelError

__all__ = [
    "BYTE_KINDS",
    "BYTES_VOCAB",
    "KINDS",
    "GLOBAL_POOLS",
    "OnStep",
    "Rows",
    "FittedModel",
    "MalvisionModel",
    "is_fitted",
    "learned_numbers",
    "apply_mask",
    "check_choice",
    "check_positive",
    "downsample_mask",
    "global_pool",
    "int_tuple",
    "layers_for",
    "pad_to_multiple",
]

BYTE_KINDS: tuple[str, ...] = ("image", "bytes", "opcodes")  # inputs drawn from the bytes themselves
PICTURE_KINDS = ("image", "views")  # what the convolutional models read as pictures
CHANNELS = {"image": 1, "views": 2}
KINDS: tuple[str, ...] = (*BYTE_KINDS, "views", *VECTOR_KINDS)
BYTES_VOCAB = 257  # byte b is id b + 1, 0 is padding
GLOBAL_POOLS = ("avg", "max", "avgmax")
Rows = np.ndarray  # training rows (N, F) float32, class ids (N,), sample weights (N,)
OnStep = Callable[[int, int], None] | None  # progress of a fit: (done, total)
# each training row's group (family, project), for a fit that draws whole groups
Groups = Sequence[object] | None


def _check_kind(model: nn.Module, kinds: tuple[str, ...], in_kind: str, n_classes: int) -> None:
    name = type(model).__name__
    if in_kind not in kinds:
        raise ModelError(f"{name} does not take {in_kind!r} input; it takes {', '.join(kinds)}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ModelError(f"{name}: n_classes must be a positive integer, got {n_classes!r}")


class MalvisionModel(nn.Module):
    """A network trained by gradient steps: subclasses build ``embedding`` (sequence kinds), ``fc``
    and ``features_embedded``."""

    input_kinds: ClassVar[tuple[str, ...]] = BYTE_KINDS
    reads_whole: ClassVar[bool] = False  # reads a sequence of any length in memory bounded by its settings

    def __init__(self, *, in_kind: str, n_classes: int, vocab_size: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        _check_kind(self, self.input_kinds, in_kind, n_classes)
        if in_kind in PICTURE_KINDS or in_kind in VECTOR_KINDS:
            vocab_size = None
        elif in_kind == "bytes":
            if vocab_size is not None and vocab_size != BYTES_VOCAB:
                raise ModelError(f"{name}: 'bytes' input has vocab_size {BYTES_VOCAB}, got {vocab_size}")
            vocab_size = BYTES_VOCAB
        elif isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ModelError(
                f"{name}: 'opcodes' input needs vocab_size (len(vocabulary) + 2), got {vocab_size!r}"
            )
        self.in_kind = in_kind
        self.n_classes = n_classes
        self.vocab_size = vocab_size
        self.num_features = 0

    @property
    def is_sequence(self) -> bool:
        return self.in_kind in ("bytes", "opcodes")

    @property
    def in_chans(self) -> int:
        """Channels of a picture input (the byte plot; and its entropy plot for views)."""
        return CHANNELS.get(self.in_kind, 1)

    # -- construction helpers ------------------------------------------------------------------------
    def _init_embedding(self, dim: int) -> None:
        if self.is_sequence:
            assert self.vocab_size is not None
            self.embedding = nn.Embedding(self.vocab_size, dim, padding_idx=0)

    def _init_head(self, num_features: int, dropout: float) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"{type(self).__name__}: dropout must be in [0, 1), got {dropout}")
        self.num_features = num_features
        self.head_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, self.n_classes)

    # -- the seam ------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if self.in_kind in VECTOR_KINDS:
            if x.dim() != 2 or not x.is_floating_point():
                raise ModelError(
                    f"{type(self).__name__} for {self.in_kind} input expects a float (B, F) tensor, "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
        elif self.in_kind in CHANNELS:
            c = CHANNELS[self.in_kind]
            if x.dim() != 4 or x.shape[1] != c or not x.is_floating_point():
                raise ModelError(
                    f"{type(self).__name__} for {self.in_kind} input expects a float (B, {c}, S, S) tensor "
                    f"in [0, 1], got {x.dtype} {tuple(x.shape)}"
                )
        elif x.dim() != 2 or x.is_floating_point() or x.dtype == torch.bool:
            raise ModelError(
                f"{type(self).__name__} for {self.in_kind} input expects int64 (B, L) ids, "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        elif x.numel() and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            lo, hi = (int(v) for v in torch.aminmax(x))
            if lo < 0 or hi >= (self.vocab_size or 0):
                raise ModelError(
                    f"{type(self).__name__}: ids must be in [0, {self.vocab_size}), got {lo}..{hi}; "
                    "convert the input with the model's own vocabulary"
                )

    def embed(self, x: Tensor) -> Tensor:
        """Ids (B, L) -> vectors (B, L, E) for sequences; the image itself for images."""
        self._check_input(x)
        return self.embedding(x) if self.is_sequence else x

    def padding_mask(self, x: Tensor) -> Tensor | None:
        """(B, L) bool, True on real tokens (position 0 always counts); None for images."""
        if not self.is_sequence:
            return None
        mask = x != 0
        mask[:, :1] = True
        return mask

    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        """Pre-logit features (B, num_features) from ``embed``'s output and the padding mask."""
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """Pre-logit features (B, num_features): what ``fc`` turns into logits."""
        return self.features_embedded(self.embed(x), self.padding_mask(x))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Logits (B, n_classes) from features (or the features after dropout if ``pre_logits``)."""
        features = self.head_drop(features)
        return features if pre_logits else self.fc(features)

    def forward_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits from embedded input; ``mask`` (B, L) is True on real tokens (None: all real)."""
        return self.forward_head(self.features_embedded(e, mask))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, n_classes); no softmax or sigmoid."""
        return self.forward_embedded(self.embed(x), self.padding_mask(x))

    def reset_classifier(self, n_classes: int) -> None:
        """Replace the last layer with a fresh one giving ``n_classes`` logits."""
        self.n_classes = n_classes
        self.fc = nn.Linear(self.num_features, n_classes)
        cfg = getattr(self, "model_config", None)
        if isinstance(cfg, dict):
            cfg["n_classes"] = n_classes

    def cam_layer(self) -> nn.Module | None:
        """The module whose (B, C, ...) output suits Grad-CAM, or None."""
        return None


class FittedModel(nn.Module):
    """A model fitted in one call on feature rows (trees, linear models), then scored by ``forward``.

    Subclasses implement ``fit`` (set their buffers from the rows) and ``forward`` (logits); they keep
    the training rows' mean and standard deviation per feature for ``typical_input``.
    """

    input_kinds: ClassVar[tuple[str, ...]] = ("features",)
    reads_whole: ClassVar[bool] = False

    def __init__(self, *, in_kind: str, n_classes: int, n_features: int) -> None:
        super().__init__()
        _check_kind(self, self.input_kinds, in_kind, n_classes)
        self.in_kind, self.n_classes, self.n_features = in_kind, n_classes, n_features
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))

    def fit(
        self,
        x: Rows,
        y: Rows,
        sample_weight: Rows | None,
        seed: int,
        on_step: OnStep = None,
        groups: Groups = None,
    ) -> None:
        """Learn from float32 rows ``x`` and class ids ``y``; ``on_step(done, total)`` follows the fit.
        ``groups`` (each row's family or project) is for a model that draws whole groups; others ignore it."""
        raise NotImplementedError

    def _check_rows(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``x`` as float32 (N, n_features) rows with every class in ``y``; records their statistics."""
        name = type(self).__name__
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ModelError(f"{name} expects (N, {self.n_features}) rows, got {x.shape}")
        if set(np.unique(y).tolist()) != set(range(self.n_classes)):
            raise ModelError(f"{name} needs every class in its training rows")
        x = np.asarray(x, dtype=np.float32)
        with torch.no_grad():
            self.feature_mean.copy_(torch.from_numpy(x.mean(0)))
            self.feature_std.copy_(torch.from_numpy(x.std(0)))
        return x

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 2 or not x.is_floating_point() or x.shape[1] != self.n_features:
            raise ModelError(
                f"{type(self).__name__} expects a float (B, {self.n_features}) tensor, "
                f"got {x.dtype} {tuple(x.shape)}"
            )

    def typical_input(self) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of the training inputs, per feature."""
        return self.feature_mean.clone(), self.feature_std.clone()


def is_fitted(model: nn.Module | type) -> bool:
    """Whether a model (or model class) is fitted in one call rather than trained by gradient steps."""
    cls = model if isinstance(model, type) else type(model)
    return issubclass(cls, FittedModel)


def learned_numbers(model: nn.Module) -> int:
    """How many numbers a model learned: its parameters, or a fitted model's buffers (trees, weights)."""
    if is_fitted(model):  # not the training rows' statistics (``typical_input``), at any depth
        stats = ("feature_mean", "feature_std")
        return sum(b.numel() for name, b in model.named_buffers() if name.rpartition(".")[2] not in stats)
    return sum(p.numel() for p in model.parameters())


def layers_for(dim: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    """(Conv, BatchNorm, MaxPool) classes for 1-D (sequences) or 2-D (images)."""
    if dim == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d


def apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the padded steps of a (B, C, T) activation (no-op for images / no mask)."""
    if mask is None or x.dim() != 3:
        return x
    return x * mask.unsqueeze(1).to(x.dtype)


def downsample_mask(mask: Tensor | None, stride: int) -> Tensor | None:
    """Mask after a stride-``stride`` conv/pool of length ceil(T / stride) (masks are prefixes)."""
    if mask is None or stride == 1:
        return mask
    return mask[:, ::stride]


def pad_to_multiple(x: Tensor, mask: Tensor | None, multiple: int) -> tuple[Tensor, Tensor | None]:
    """Right-pad a (B, C, T) tensor (and its mask) with zeros to a multiple of ``multiple``."""
    extra = (-x.shape[-1]) % multiple
    if extra == 0:
        return x, mask
    x = F.pad(x, (0, extra))
    if mask is not None:
        mask = F.pad(mask, (0, extra), value=False)
    return x, mask


def global_pool(x: Tensor, mask: Tensor | None, mode: str) -> Tensor:
    """Pool (B, C, T) or (B, C, H, W) to (B, C) or (B, 2C) over real positions: avg, max or avgmax."""
    if x.dim() == 4:
        x, mask = x.flatten(2), None
    parts = []
    if mode in ("avg", "avgmax"):
        if mask is None:
            parts.append(x.mean(-1))
        else:
            m = mask.unsqueeze(1).to(x.dtype)
            parts.append((x * m).sum(-1) / m.sum(-1).clamp(min=1.0))
    if mode in ("max", "avgmax"):
        parts.append((x if mask is None else x.masked_fill(~mask.unsqueeze(1), float("-inf"))).amax(-1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def check_choice(model: str, arg: str, value: object, choices: tuple[str, ...]) -> None:
    """A ``ModelError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ModelError(f"{model}: {arg} must be one of {', '.join(choices)}, got {value!r}")


def check_positive(model: str, **values: int) -> None:
    """A ``ModelError`` unless every value is a positive int."""
    for arg, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ModelError(f"{model}: {arg} must be a positive integer, got {v!r}")


def int_tuple(model: str, arg: str, value: object) -> tuple[int, ...]:
    """A non-empty tuple of positive ints from a list/tuple (checkpoints store lists)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, list | tuple) or not value:
        raise ModelError(f"{model}: {arg} must be a non-empty list of positive integers, got {value!r}")
    check_positive(model, **{f"{arg}[{i}]": v for i, v in enumerate(value)})
    return tuple(value)
