"""``gbt``: gradient-boosted decision trees over the PE structure vector (``convert.pefeatures``).

scikit-learn grows the trees (``GradientBoostingClassifier``, read through its public ``tree_``
arrays); this module holds them as tensors and walks them in ``forward``, so a tree model saves,
loads, scores and exports to ONNX like every other model. Each tree is padded to the node count of a
full tree of ``max_depth``; a leaf points at itself, so ``max_depth`` steps reach every leaf.

A ``FittedModel``: trees have no gradient, so training calls ``fit`` with every training row instead of
the optimiser loop, and explanations measure each feature by occlusion.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from malvision.convert.pefeatures import N_FEATURES
from malvision.errors import ModelError
from malvision.models._base import FittedModel, OnStep, Rows, check_positive
from malvision.models._registry import register_model

__all__ = ["GradientBoostedTrees"]


def _floor32(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: ``x <= t`` then holds for a float32 ``x``
    exactly when scikit-learn's float64 comparison does."""
    f = t.astype(np.float32)
    over = f.astype(np.float64) > t
    f[over] = np.nextafter(f[over], np.float32(-np.inf))
    return f


@register_model("gbt")
class GradientBoostedTrees(FittedModel):
    """Gradient-boosted trees on the PE structure vector (scikit-learn fits, torch and ONNX score)."""

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        n_features: int = N_FEATURES,
        n_trees: int = 300,
        max_depth: int = 5,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        max_features: float = 0.3,
    ) -> None:
        check_positive("gbt", n_features=n_features, n_trees=n_trees, max_depth=max_depth)
        super().__init__(in_kind=in_kind, n_classes=n_classes, n_features=n_features)
        if n_classes != 2:
            raise ModelError(f"gbt scores two classes (benign, malware), got {n_classes}")
        if max_depth > 12:
            raise ModelError(f"gbt: max_depth {max_depth} is over the limit of 12")
        for name, v in (
            ("learning_rate", learning_rate),
            ("subsample", subsample),
            ("max_features", max_features),
        ):
            if not 0.0 < v <= 1.0:
                raise ModelError(f"gbt: {name} must be in (0, 1], got {v}")
        self.n_trees, self.max_depth = n_trees, max_depth
        self.params = dict(learning_rate=learning_rate, subsample=subsample, max_features=max_features)
        nodes = 2 ** (max_depth + 1) - 1
        # Flat (n_trees * nodes) arrays; node k of tree t is at t * nodes + k, children likewise.
        self.register_buffer("feature", torch.zeros(n_trees * nodes, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(n_trees * nodes))
        self.register_buffer("left", torch.arange(n_trees * nodes, dtype=torch.int64))
        self.register_buffer("right", torch.arange(n_trees * nodes, dtype=torch.int64))
        self.register_buffer("value", torch.zeros(n_trees * nodes))
        self.register_buffer("bias", torch.zeros(()))
        self.register_buffer("roots", torch.arange(n_trees, dtype=torch.int64) * nodes)

    def raw_score(self, x: Tensor) -> Tensor:
        """Log-odds of the second class, (B,)."""
        self._check_input(x)
        node = self.roots.expand(x.shape[0], -1)
        for _ in range(self.max_depth):
            go_left = x.gather(1, self.feature[node]) <= self.threshold[node]
            node = torch.where(go_left, self.left[node], self.right[node])
        return self.value[node].sum(1) + self.bias

    def forward(self, x: Tensor) -> Tensor:
        raw = self.raw_score(x.float())
        return torch.stack([torch.zeros_like(raw), raw], dim=1)

    def fit(self, x: Rows, y: Rows, sample_weight: Rows | None, seed: int, on_step: OnStep = None) -> None:
        """Grow the trees on float32 rows ``x`` and labels ``y`` (0/1), then load them as tensors;
        ``on_step(done, total)`` is called as each tree is grown."""
        from sklearn.ensemble import GradientBoostingClassifier

        x = self._check_rows(x, y)
        clf = GradientBoostingClassifier(
            n_estimators=self.n_trees, max_depth=self.max_depth, random_state=seed, **self.params
        )
        monitor = None if on_step is None else (lambda i, _est, _locals: on_step(i + 1, self.n_trees))
        clf.fit(x, y, sample_weight=sample_weight, monitor=monitor)
        nodes = 2 ** (self.max_depth + 1) - 1
        feature = np.zeros((self.n_trees, nodes), np.int64)
        threshold = np.zeros((self.n_trees, nodes), np.float32)
        left = np.tile(np.arange(nodes), (self.n_trees, 1))
        right = left.copy()
        value = np.zeros((self.n_trees, nodes), np.float64)
        for t, est in enumerate(clf.estimators_[:, 0]):
            tree = est.tree_
            n = tree.node_count
            inner = tree.children_left[:n] >= 0
            feature[t, :n] = np.where(inner, tree.feature[:n], 0)
            threshold[t, :n] = np.where(inner, _floor32(tree.threshold[:n]), 0)
            left[t, :n] = np.where(inner, tree.children_left[:n], np.arange(n))
            right[t, :n] = np.where(inner, tree.children_right[:n], np.arange(n))
            value[t, :n] = np.where(inner, 0.0, clf.learning_rate * tree.value[:n, 0, 0])
        offset = (np.arange(self.n_trees) * nodes)[:, None]
        with torch.no_grad():
            self.feature.copy_(torch.from_numpy(feature.ravel()))
            self.threshold.copy_(torch.from_numpy(threshold.ravel()))
            self.left.copy_(torch.from_numpy((left + offset).ravel()))
            self.right.copy_(torch.from_numpy((right + offset).ravel()))
            self.value.copy_(torch.from_numpy(value.ravel()).float())
            self.bias.zero_()
            # The starting log-odds, read off scikit-learn's own scores (its public API has no field).
            head = x[: min(len(x), 256)]
            ours = self.raw_score(torch.from_numpy(head)).double().numpy()
            theirs = clf.decision_function(head)
            self.bias.fill_(float(np.mean(theirs - ours)))
            gap = float(np.abs(theirs - ours - self.bias.item()).max())
        if gap > 1e-3:
            raise ModelError(f"gbt: the tensor trees disagree with scikit-learn by {gap:.2g}")

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load, then refuse trees that point outside their nodes or the feature vector (a damaged
        or hostile checkpoint), which would otherwise fail on the first file scanned."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        n = self.feature.numel()
        for name, high in (("feature", self.n_features), ("left", n), ("right", n)):
            t = getattr(self, name)
            if int(t.min()) < 0 or int(t.max()) >= high:
                raise RuntimeError(f"gbt: {name} indices leave [0, {high})")
        return result

    def extra_repr(self) -> str:
        return f"n_trees={self.n_trees}, max_depth={self.max_depth}, {self.params}"
