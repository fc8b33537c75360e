"""Gradient-boosted trees over the PE structure vector (``convert.pefeatures``), held as tensors.

``gbt``: scikit-learn grows the trees (``GradientBoostingClassifier``, read through its public ``tree_``
arrays). ``lgbm``: LightGBM grows them leaf-wise (read through ``Booster.dump_model``), the field's
standard recipe, and much faster. Either way the trees are held as flat tensors and walked in
``forward``, so a tree model saves, loads, scores and exports to ONNX like every other model. Each
tree gets the node count of a full tree of ``max_depth`` (unused nodes are leaves worth 0); a leaf
points at itself, so ``max_depth`` steps reach every leaf.

A ``FittedModel``: trees have no gradient, so training calls ``fit`` with every training row instead of
the optimiser loop, and explanations measure each feature by occlusion.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from malvision.convert.pefeatures import N_FEATURES
from malvision.data.splits import group_keys
from malvision.errors import ModelError
from malvision.models._base import FittedModel, Groups, OnStep, Rows, check_positive
from malvision.models._registry import register_model

__all__ = ["TreeEnsemble", "GradientBoostedTrees", "LightGBMTrees"]

MAX_DEPTH = 12


def _floor32(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: ``x <= t`` then holds for a float32 ``x``
    exactly when the float64 comparison the trees were grown with does."""
    f = t.astype(np.float32)
    over = f.astype(np.float64) > t
    f[over] = np.nextafter(f[over], np.float32(-np.inf))
    return f


def _unit(name: str, **values: float) -> None:
    for arg, v in values.items():
        if not 0.0 < v <= 1.0:
            raise ModelError(f"{name}: {arg} must be in (0, 1], got {v}")


class TreeEnsemble(FittedModel):
    """Boosted trees as flat tensors: node ``k`` of tree ``t`` is at ``t * nodes + k``; no tree is deeper
    than ``max_depth``. Two classes: one tree a round scores the second class's log-odds; more classes:
    one tree a round for each class, in class order, their sums the logits (softmax boosting)."""

    def __init__(
        self,
        *,
        name: str,
        in_kind: str,
        n_classes: int,
        n_features: int,
        n_trees: int,
        max_depth: int,
        nodes: int | None = None,
    ) -> None:
        check_positive(name, n_features=n_features, n_trees=n_trees, max_depth=max_depth)
        super().__init__(in_kind=in_kind, n_classes=n_classes, n_features=n_features)
        if n_classes < 2:
            raise ModelError(f"{name} scores two or more classes, got {n_classes}")
        if max_depth > MAX_DEPTH:
            raise ModelError(f"{name}: max_depth {max_depth} is over the limit of {MAX_DEPTH}")
        self.name, self.n_trees, self.max_depth = name, n_trees, max_depth
        self.per_round = 1 if n_classes == 2 else n_classes
        total = n_trees * self.per_round
        nodes = self.nodes = nodes or 2 ** (max_depth + 1) - 1  # default: room for a full tree
        self.register_buffer("feature", torch.zeros(total * nodes, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(total * nodes))
        self.register_buffer("left", torch.arange(total * nodes, dtype=torch.int64))
        self.register_buffer("right", torch.arange(total * nodes, dtype=torch.int64))
        self.register_buffer("value", torch.zeros(total * nodes))
        self.register_buffer("bias", torch.zeros(() if n_classes == 2 else (n_classes,)))
        self.register_buffer("roots", torch.arange(total, dtype=torch.int64) * nodes)

    def raw_score(self, x: Tensor) -> Tensor:
        """Log-odds of the second class (B,); with more classes, the logits (B, n_classes)."""
        self._check_input(x)
        node = self.roots.expand(x.shape[0], -1)
        for _ in range(self.max_depth):
            go_left = x.gather(1, self.feature[node]) <= self.threshold[node]
            node = torch.where(go_left, self.left[node], self.right[node])
        if self.per_round == 1:
            return self.value[node].sum(1) + self.bias
        return self.value[node].view(x.shape[0], self.n_trees, self.per_round).sum(1) + self.bias

    def forward(self, x: Tensor) -> Tensor:
        raw = self.raw_score(x.float())
        return raw if raw.dim() == 2 else torch.stack([torch.zeros_like(raw), raw], dim=1)

    def arrays(self) -> dict[str, np.ndarray]:
        """The trees as numpy arrays, for ``export.TreeArrays`` (a scan with neither torch nor ONNX Runtime)."""
        out = {
            k: getattr(self, k).numpy()
            for k in ("feature", "threshold", "left", "right", "value", "bias", "roots")
        }
        shape = np.array([self.max_depth, self.n_trees, self.per_round, self.n_features], dtype=np.int64)
        return {**out, "shape": shape}

    def _empty(self) -> dict[str, np.ndarray]:
        """(trees, nodes) arrays of trees whose every node is a leaf worth 0, to fill in."""
        total = self.n_trees * self.per_round
        left = np.tile(np.arange(self.nodes), (total, 1))
        return {
            "feature": np.zeros((total, self.nodes), np.int64),
            "threshold": np.zeros((total, self.nodes), np.float32),
            "left": left,
            "right": left.copy(),
            "value": np.zeros((total, self.nodes), np.float64),
        }

    def _load(self, trees: dict[str, np.ndarray], x: np.ndarray, theirs: np.ndarray) -> None:
        """Hold ``trees`` (from ``_empty``, filled) as the model's tensors; the constant term is read off
        the grower's own raw scores ``theirs`` of the rows ``x``, which the tensors must then match."""
        offset = (np.arange(self.n_trees * self.per_round) * self.nodes)[:, None]
        with torch.no_grad():
            self.feature.copy_(torch.from_numpy(trees["feature"].ravel()))
            self.threshold.copy_(torch.from_numpy(trees["threshold"].ravel()))
            self.left.copy_(torch.from_numpy((trees["left"] + offset).ravel()))
            self.right.copy_(torch.from_numpy((trees["right"] + offset).ravel()))
            self.value.copy_(torch.from_numpy(trees["value"].ravel()).float())
            self.bias.zero_()
            ours = self.raw_score(torch.from_numpy(x)).double().numpy()
            self.bias.copy_(torch.as_tensor(np.mean(theirs - ours, axis=0)))
            gap = float(np.abs(theirs - ours - self.bias.double().numpy()).max())
        if gap > 1e-3:
            raise ModelError(f"{self.name}: the tensor trees disagree with the fitted ones by {gap:.2g}")

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load, then refuse trees that point outside their nodes or the feature vector (a damaged
        or hostile checkpoint), which would otherwise fail on the first file scanned."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.check_indices()
        return result

    def check_indices(self) -> None:
        """A ``RuntimeError`` if a tree points outside its nodes or the feature vector."""
        n = self.feature.numel()
        for name, high in (("feature", self.n_features), ("left", n), ("right", n)):
            t = getattr(self, name)
            if int(t.min()) < 0 or int(t.max()) >= high:
                raise RuntimeError(f"{self.name}: {name} indices leave [0, {high})")


@register_model("gbt")
class GradientBoostedTrees(TreeEnsemble):
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
        if n_classes != 2:
            raise ModelError(f"gbt scores two classes (benign, malware), got {n_classes}; lgbm takes more")
        args = dict(in_kind=in_kind, n_classes=n_classes, n_features=n_features, n_trees=n_trees)
        super().__init__(name="gbt", max_depth=max_depth, **args)
        _unit("gbt", learning_rate=learning_rate, subsample=subsample, max_features=max_features)
        self.params = dict(learning_rate=learning_rate, subsample=subsample, max_features=max_features)

    def fit(
        self,
        x: Rows,
        y: Rows,
        sample_weight: Rows | None,
        seed: int,
        on_step: OnStep = None,
        groups: Groups = None,
    ) -> None:
        """Grow the trees on float32 rows ``x`` and labels ``y`` (0/1), then load them as tensors;
        ``on_step(done, total)`` is called as each tree is grown."""
        from sklearn.ensemble import GradientBoostingClassifier

        x = self._check_rows(x, y)
        clf = GradientBoostingClassifier(
            n_estimators=self.n_trees, max_depth=self.max_depth, random_state=seed, **self.params
        )
        monitor = None if on_step is None else (lambda i, _est, _locals: on_step(i + 1, self.n_trees))
        clf.fit(x, y, sample_weight=sample_weight, monitor=monitor)
        trees = self._empty()
        for t, est in enumerate(clf.estimators_[:, 0]):
            tree = est.tree_
            n = tree.node_count
            inner = tree.children_left[:n] >= 0
            trees["feature"][t, :n] = np.where(inner, tree.feature[:n], 0)
            trees["threshold"][t, :n] = np.where(inner, _floor32(tree.threshold[:n]), 0)
            trees["left"][t, :n] = np.where(inner, tree.children_left[:n], np.arange(n))
            trees["right"][t, :n] = np.where(inner, tree.children_right[:n], np.arange(n))
            trees["value"][t, :n] = np.where(inner, 0.0, clf.learning_rate * tree.value[:n, 0, 0])
        # The starting log-odds, read off scikit-learn's own scores (its public API has no field).
        head = x[: min(len(x), 256)]
        self._load(trees, head, clf.decision_function(head))

    def extra_repr(self) -> str:
        return f"n_trees={self.n_trees}, max_depth={self.max_depth}, {self.params}"


@register_model("lgbm")
class LightGBMTrees(TreeEnsemble):
    """LightGBM's leaf-wise boosted trees on the PE structure vector (LightGBM fits, torch and ONNX score)."""

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        n_features: int = N_FEATURES,
        n_trees: int = 500,
        max_depth: int = 8,
        num_leaves: int = 31,
        learning_rate: float = 0.05,
        min_child_samples: int = 20,
        subsample: float = 0.8,
        colsample: float = 0.3,
        reg_lambda: float = 0.0,
        path_smooth: float = 0.0,
        threads: int = 1,
        col_wise: bool = False,
        extra_trees: bool = False,
        bags: int = 1,
        bag_groups: float = 1.0,
    ) -> None:
        """``col_wise``: build histograms feature by feature (fast when ``colsample`` leaves out most of
        many features, as for n-grams) instead of row by row; the same splits up to float sums.
        ``extra_trees``: each split tries one random threshold a feature (extremely randomised trees)
        instead of the best one. ``bags``: fit that many boosters of ``n_trees`` rounds, each with its own
        seed, and score their mean log-odds (one ensemble of ``bags * n_trees`` trees, leaves scaled).
        ``bag_groups``: each booster learns from the rows of that share of the groups (families, projects),
        drawn with its seed, so the boosters differ in what they saw as the folds of a cross-validation do.
        ``path_smooth``: LightGBM's pull of each leaf's value toward its parent's, stronger for leaves of few
        rows (0: none)."""
        check_positive(
            "lgbm", num_leaves=num_leaves, min_child_samples=min_child_samples, max_depth=max_depth,
            threads=threads, bags=bags,
        )  # fmt: skip
        args = dict(in_kind=in_kind, n_classes=n_classes, n_features=n_features, n_trees=n_trees * bags)
        nodes = min(2 ** (max_depth + 1) - 1, 2 * num_leaves - 1)  # splits, then leaves
        super().__init__(name="lgbm", max_depth=max_depth, nodes=nodes, **args)
        self.rounds, self.bags, self.bag_groups = n_trees, bags, bag_groups
        self.threads = threads
        self.layout = {"force_col_wise": True} if col_wise else {"force_row_wise": True}
        _unit(
            "lgbm",
            learning_rate=learning_rate,
            subsample=subsample,
            colsample=colsample,
            bag_groups=bag_groups,
        )
        for name, value in (("reg_lambda", reg_lambda), ("path_smooth", path_smooth)):
            if value < 0:
                raise ModelError(f"lgbm: {name} must be 0 or more, got {value}")
        self.params = dict(
            num_leaves=num_leaves, learning_rate=learning_rate, min_child_samples=min_child_samples,
            subsample=subsample, subsample_freq=1, colsample_bytree=colsample, reg_lambda=reg_lambda,
        )  # fmt: skip
        if extra_trees:  # only when asked, so a checkpoint's kwargs of before build the same classifier
            self.params["extra_trees"] = True
        if path_smooth:
            self.params["path_smooth"] = path_smooth

    def classifier(self, seed: int) -> Any:
        """The unfitted ``lightgbm.LGBMClassifier`` that ``fit`` grows (deterministic for the same
        ``threads``)."""
        import lightgbm as lgb

        return lgb.LGBMClassifier(
            n_estimators=self.rounds, max_depth=self.max_depth, random_state=seed, n_jobs=self.threads,
            verbose=-1, deterministic=True, **self.layout, **self.params,
        )  # fmt: skip

    def fit(
        self,
        x: Rows,
        y: Rows,
        sample_weight: Rows | None,
        seed: int,
        on_step: OnStep = None,
        groups: Groups = None,
    ) -> None:
        """Grow the trees with LightGBM (each bag with seed ``seed + bag``), then load them as tensors."""
        x, y = self._check_rows(x, y), np.asarray(y)
        trees, head = self._empty(), x[: min(len(x), 256)]
        theirs = 0.0
        for bag in range(self.bags):
            rows = self._bag_rows(y, groups, seed + bag)
            clf = self.classifier(seed + bag)
            done = bag * self.rounds
            callbacks = (
                []
                if on_step is None
                else [lambda env, done=done: on_step(done + env.iteration + 1, self.n_trees)]
            )
            weight = None if sample_weight is None else np.asarray(sample_weight)[rows]
            clf.fit(x[rows], y[rows], sample_weight=weight, callbacks=callbacks)
            dumped = clf.booster_.dump_model()["tree_info"]
            for t, info in enumerate(dumped):
                self._add_tree(trees, bag * len(dumped) + t, info["tree_structure"], 1 / self.bags)
            theirs = theirs + clf.booster_.predict(head, raw_score=True) / self.bags
        self._load(trees, head, np.asarray(theirs))

    def _bag_rows(self, y: np.ndarray, groups: Groups, seed: int) -> np.ndarray | slice:
        """The rows one booster learns from: all, or those of a ``bag_groups`` share of the groups."""
        if self.bag_groups == 1.0:
            return slice(None)
        if groups is None or len(groups) != len(y):
            raise ModelError("lgbm: bag_groups draws whole groups, so the fit needs each row's group")
        # a row without a group is a group of its own, as the cross-validation keys them
        names, inverse = np.unique(group_keys(groups, len(y)), return_inverse=True)
        rows = (np.random.default_rng(seed).random(len(names)) < self.bag_groups)[inverse]
        if len(np.unique(y[rows])) < self.n_classes:
            raise ModelError(f"lgbm: a bag of {self.bag_groups:g} of the groups left out a class; draw more")
        return rows

    def _add_tree(
        self, trees: dict[str, np.ndarray], t: int, root: dict[str, Any], scale: float = 1.0
    ) -> None:
        """One dumped tree into slot ``t``, its leaves times ``scale``: split nodes first, leaves after them."""
        n_split = sum(1 for _ in _walk(root) if "split_index" in _)
        for node in _walk(root):
            if "split_index" not in node:
                trees["value"][t, n_split + node.get("leaf_index", 0)] = node["leaf_value"] * scale
                continue
            if node["decision_type"] != "<=":
                raise ModelError(f"lgbm: split {node['decision_type']!r} is not supported")
            k = node["split_index"]
            trees["feature"][t, k] = node["split_feature"]
            trees["threshold"][t, k] = _floor32(np.asarray([node["threshold"]], np.float64))[0]
            for side in ("left", "right"):
                child = node[f"{side}_child"]
                trees[side][t, k] = (
                    child["split_index"] if "split_index" in child else n_split + child.get("leaf_index", 0)
                )

    def extra_repr(self) -> str:
        bags = f", bags={self.bags}" if self.bags > 1 else ""
        bags += f", bag_groups={self.bag_groups:g}" if self.bag_groups < 1 else ""
        return f"n_trees={self.rounds}{bags}, max_depth={self.max_depth}, {self.params}"


def _walk(node: dict[str, Any]) -> Any:
    """Every node of a dumped LightGBM tree, parents before children."""
    yield node
    for side in ("left_child", "right_child"):
        if side in node:
            yield from _walk(node[side])
