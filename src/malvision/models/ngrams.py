"""``ngram``: token n-gram counts over the whole sequence, TF-IDF and a linear or tree classifier.

The classic family-classification recipe of BIG2015 solutions, as a fitted model. Every 1- to
``n_max``-gram of token ids is one exact int64 key (15 bits per id, ``n`` above them): no hash
collisions, and every kept gram reads back as mnemonics. ``fit`` keeps the grams found in at least
``min_df`` training samples, the ``top_k`` of them by chi-squared, weighs them by sublinear TF-IDF with
l2-normalised rows (scikit-learn's ``TfidfTransformer``) and fits a linear SVM, a logistic regression or
LightGBM's boosted trees on the grams' frequencies and the sequence's length (one tree a round for each
class, held as tensors like ``lgbm``).
With ``knn_bits``, the trees also read how close a sample is to the nearest training samples of each
class (``models.neighbours``); with ``offset_folds``, their logits get one offset a class fitted out of fold.
Counting walks a sequence ``chunk_size`` ids at a time, so memory follows
``chunk_size`` and ``top_k``, never the sample's length: the model reads whole samples, however long.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from malvision.errors import ModelError
from malvision.models._base import FittedModel, Groups, OnStep, check_choice, check_positive
from malvision.models._registry import register_model
from malvision.models.grams import (
    MAX_N,
    N_SHIFT,
    check_sorted,
    count_matrix,
    frequencies,
    gram_keys,
    gram_tokens,
    idf_of,
    linear_head,
    select_grams,
    tfidf,
    tfidf_rows,
    tree_input,
)
from malvision.models.neighbours import Neighbours
from malvision.models.trees import LightGBMTrees

__all__ = ["NgramModel"]

CLASSIFIERS = ("svm", "logistic", "lgbm")


@register_model("ngram")
class NgramModel(FittedModel):
    """Opcode (or byte) 1- to 4-grams over the whole sequence, with a linear or a boosted-tree head."""

    input_kinds = ("opcodes", "bytes")
    reads_whole = True
    exports = False  # counting grams (int64 bit operations, searches) has no ONNX form

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        n_max: int = 4,
        top_k: int = 100_000,
        min_df: int = 2,
        classifier: str = "svm",
        c: float = 1.0,
        n_trees: int = 300,
        num_leaves: int = 15,
        learning_rate: float = 0.1,
        colsample: float = 0.2,
        threads: int = 1,
        chunk_size: int = 65_536,
        col_wise: bool = False,
        knn_bits: int = 0,
        knn_k: int = 20_000,
        offset_folds: int = 0,
    ) -> None:
        """``col_wise``: the tree head builds LightGBM's histograms feature by feature, several times
        faster over thousands of grams sampled at ``colsample`` (the same trees up to float sums).
        ``knn_bits``: the tree head also reads each sample's similarity to the nearest training samples of
        each class (``Neighbours``: TF-IDF over the ``knn_k`` grams chi-squared ranks first, each training
        sample kept as ``knn_bits`` SimHash bits; 0: not). ``offset_folds``: the tree head's logits get one
        offset a class, fitted to minimise the log-loss of the training rows' out-of-fold logits over that
        many folds (each fold a fit of its own; 0: no offsets)."""
        check_positive("ngram", n_max=n_max, top_k=top_k, min_df=min_df, chunk_size=chunk_size, knn_k=knn_k)
        check_choice("ngram", "classifier", classifier, CLASSIFIERS)
        if not isinstance(col_wise, bool):
            raise ModelError(f"ngram: col_wise must be true or false, got {col_wise!r}")
        if not isinstance(knn_bits, int) or knn_bits < 0 or knn_bits % 8:
            raise ModelError(f"ngram: knn_bits must be 0 or a positive multiple of 8, got {knn_bits!r}")
        if not isinstance(offset_folds, int) or offset_folds < 0 or offset_folds == 1:
            raise ModelError(f"ngram: offset_folds must be 0 or at least 2, got {offset_folds!r}")
        for name, value in (("col_wise", col_wise), ("knn_bits", knn_bits), ("offset_folds", offset_folds)):
            if value and classifier != "lgbm":
                raise ModelError(f"ngram: {name} is for the tree head (classifier=lgbm)")
        if n_max > MAX_N:
            raise ModelError(f"ngram: n_max must be at most {MAX_N}, got {n_max}")
        if not c > 0:
            raise ModelError(f"ngram: c must be positive, got {c}")
        super().__init__(in_kind=in_kind, n_classes=n_classes, n_features=top_k)
        self.vocab_size = vocab_size
        self.n_max, self.min_df, self.chunk_size = n_max, min_df, chunk_size
        self.classifier, self.c = classifier, c
        self.offset_folds = offset_folds
        self._fold_args = dict(  # what each of offset_folds' fits is built with
            in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size, n_max=n_max, top_k=top_k, min_df=min_df,
            classifier=classifier, n_trees=n_trees, num_leaves=num_leaves, learning_rate=learning_rate,
            colsample=colsample, threads=threads, chunk_size=chunk_size, col_wise=col_wise, knn_bits=knn_bits,
            knn_k=knn_k,
        )  # fmt: skip
        self.register_buffer("keys", torch.full((top_k,), -1, dtype=torch.int64))  # sorted; -1 never matches
        self.register_buffer("idf", torch.zeros(top_k))
        linear = classifier != "lgbm"
        self.register_buffer("weight", torch.zeros(top_k if linear else 0, n_classes))
        self.register_buffer("bias", torch.zeros(n_classes))  # the linear head's, or the trees' offsets
        self.near = Neighbours(n_classes, knn_bits, knn_k) if knn_bits else None
        self._table: tuple[Tensor, Tensor, Tensor] | None = None  # _lookup's
        self.trees: LightGBMTrees | None = None
        if not linear:  # boosted trees, one a round for each class
            n_near = self.near.n_out if self.near is not None else 0
            self.trees = LightGBMTrees(  # the grams' frequencies, the log of the length, the neighbours
                in_kind="features", n_classes=n_classes, n_features=top_k + 1 + n_near, n_trees=n_trees,
                num_leaves=num_leaves, learning_rate=learning_rate, min_child_samples=3, colsample=colsample,
                threads=threads, col_wise=col_wise,
            )  # fmt: skip

    # -- fitting -------------------------------------------------------------------------------------
    def fit(
        self,
        x: Sequence[np.ndarray],
        y: np.ndarray,
        sample_weight: np.ndarray | None,
        seed: int,
        on_step: OnStep = None,
        groups: Groups = None,
    ) -> None:
        """Learn from the training sequences ``x`` (1-D id arrays, whole) and class ids ``y``."""
        y = np.asarray(y)
        if len(x) != len(y) or set(np.unique(y).tolist()) != set(range(self.n_classes)):
            raise ModelError("ngram needs one class id per sequence and every class in its training rows")
        counts, vocab = count_matrix(x, self.n_max, self.chunk_size, on_step)
        lengths = np.array([len(ids) for ids in x], dtype=np.float64)
        if sample_weight is not None:  # mean 1 over the rows, so c means what it says
            sample_weight = np.asarray(sample_weight, dtype=np.float64) / np.mean(sample_weight)
        offsets = self._offsets(counts, vocab, y, lengths, sample_weight, seed, on_step)
        last = self.offset_folds  # the offsets' fits first, then this one: one share each of the progress
        step = (
            on_step if on_step is None or not last else (lambda d, t: on_step(last * t + d, (last + 1) * t))
        )
        self._fit_counts(counts, vocab, y, lengths, sample_weight, seed, step)
        if self.trees is not None:
            with torch.no_grad():
                self.bias.copy_(torch.from_numpy(offsets.astype(np.float32)))
        if on_step is not None:
            on_step(len(x) + 1, len(x) + 1)

    def _fit_counts(
        self, counts: Any, vocab: np.ndarray, y: np.ndarray, lengths: np.ndarray,
        sample_weight: np.ndarray | None, seed: int, on_step: OnStep = None,
    ) -> None:  # fmt: skip
        """Fit on the training rows' gram ``counts`` (scipy CSR, samples x the sorted ``vocab`` keys)."""
        near = self.near.fit(counts, vocab, y) if self.near is not None else np.zeros((len(y), 0))
        kept, df = select_grams(counts, y, self.min_df, self.n_features)
        counts = counts[:, kept].tocsr()
        idf = idf_of(df[kept], len(y))
        weights = tfidf(counts, idf) if self.trees is None else frequencies(counts, lengths)
        pad = self.n_features - len(kept)  # unused columns come first: their key, -1, never matches
        if self.trees is not None:
            head = np.hstack([np.zeros((len(y), pad), np.float32), tree_input(weights, lengths), near])
            self.trees.fit(head, y, sample_weight, seed, on_step)
        else:
            w, b = linear_head(weights, y, sample_weight, self.classifier, self.c, seed)
        with torch.no_grad():
            self.keys.copy_(torch.from_numpy(np.concatenate([np.full(pad, -1), vocab[kept]])))
            self.idf.copy_(torch.from_numpy(np.concatenate([np.zeros(pad), idf]).astype(np.float32)))
            if self.trees is None:
                self.weight.copy_(
                    torch.from_numpy(np.vstack([np.zeros((pad, self.n_classes)), w]).astype(np.float32))
                )
                self.bias.copy_(torch.from_numpy(b.astype(np.float32)))
            dense_mean = np.asarray(weights.mean(0)).ravel()
            self.feature_mean.copy_(
                torch.from_numpy(np.concatenate([np.zeros(pad), dense_mean]).astype(np.float32))
            )
        self._table = None

    def _offsets(
        self, counts: Any, vocab: np.ndarray, y: np.ndarray, lengths: np.ndarray,
        sample_weight: np.ndarray | None, seed: int, on_step: OnStep = None,
    ) -> np.ndarray:  # fmt: skip
        """One offset a class (summing to 0) that minimises the log-loss of the training rows' logits
        out of ``offset_folds`` folds, each scored by a fit on the others (zeros without ``offset_folds``).
        The tree head's confidence is not calibrated across classes: the inverse-frequency class weights
        and the trees' fit to their own rows both tilt it."""
        if not self.offset_folds:
            return np.zeros(self.n_classes)
        from malvision.calibration import fit_class_offsets
        from malvision.data.splits import stratified_kfold

        logits = np.zeros((len(y), self.n_classes))
        splits = stratified_kfold(y, self.offset_folds, random_state=seed)
        for j, (tr, te) in enumerate(splits):
            fold = NgramModel(**self._fold_args)
            step = None if on_step is None else (lambda d, t, j=j: on_step(j * t + d, (len(splits) + 1) * t))
            weight = None if sample_weight is None else sample_weight[tr]
            fold._fit_counts(counts[tr], vocab, y[tr], lengths[tr], weight, seed, step)
            logits[te] = fold._score_counts(counts[te], vocab, lengths[te])
        return fit_class_offsets(logits, y)

    def _score_counts(self, counts: Any, vocab: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Logits (float64) of rows of gram ``counts`` over the sorted ``vocab`` keys: ``forward``'s head
        on counts already made, 512 rows at a time."""

        def columns(keys: Tensor) -> tuple[np.ndarray, np.ndarray]:
            k = keys.numpy()
            at = np.minimum(np.searchsorted(vocab, k), len(vocab) - 1)
            return at, (k >= 0) & (vocab[at] == k)

        mine = columns(self.keys)
        near = columns(self.near.keys) if self.near is not None else None
        out = []
        for lo in range(0, counts.shape[0], 512):
            part = counts[lo : lo + 512]
            n = torch.from_numpy(lengths[lo : lo + 512])

            def dense(cols: tuple[np.ndarray, np.ndarray], part: Any = part) -> Tensor:
                return torch.from_numpy(part[:, cols[0]].toarray() * cols[1]).float()

            similar = self.near(dense(near)) if near is not None else torch.zeros(len(n), 0)
            with torch.no_grad():
                out.append(self._head(self._weigh_rows(dense(mine), n), n, similar).double().numpy())
        return np.concatenate(out)

    @property
    def attribution_method(self) -> str:
        """How ``gram_parts`` measures a gram, as explanations name it."""
        return "n-gram occlusion" if self.trees is not None else "n-gram weights"

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load, then refuse trees that point outside their nodes, keys out of order, or neighbours whose
        labels are not one a row of this model's classes (a damaged or hostile checkpoint)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._table = None
        if self.trees is not None:
            self.trees.check_indices()
        check_sorted(self.keys)
        if self.near is not None:
            self.near.check()
        return result

    # -- scoring -------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 2 or x.is_floating_point() or x.dtype == torch.bool:
            raise ModelError(f"ngram expects int64 (B, L) ids, got {x.dtype} {tuple(x.shape)}")

    @staticmethod
    def _column(keys: Tensor, k: Tensor) -> Tensor:
        """Each gram key's column among the sorted ``keys``, or -1."""
        if len(keys) == 0:
            return torch.full_like(k, -1)
        col = torch.searchsorted(keys, k).clamp(max=len(keys) - 1)
        return torch.where(keys[col] == k, col, -1)

    def _lookup(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every gram key the trees or the neighbours read (sorted), and its column in each; one more entry,
        for a gram neither reads, points at a spare column past the last of each. Made once after a fit or
        a load: one search a gram."""
        if self._table is None:
            near = self.near.keys if self.near is not None else self.keys[:0]
            both = torch.unique(torch.cat([self.keys, near]))
            cols = []
            for keys in (self.keys, near):
                c = self._column(keys, both)
                cols.append(torch.cat([torch.where(c >= 0, c, len(keys)), torch.tensor([len(keys)])]))
            self._table = (both, *cols)
        return self._table

    def _kept(self, ids: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Chunk by chunk of a 1-D sequence: the keys of the grams starting in it, where they start (in
        ``ids``), and each one's index among ``_lookup``'s keys (past the last for a gram neither reads)."""
        both = self._lookup()[0]
        for c in range(0, len(ids), self.chunk_size):
            k, at = gram_keys(ids[c : c + self.chunk_size + self.n_max - 1], self.n_max, self.chunk_size)
            u = torch.searchsorted(both, k)  # both is never empty: keys holds top_k entries, -1 for unused
            yield k, at + c, torch.where(both[u.clamp(max=len(both) - 1)] == k, u, len(both))

    def _counts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """How often each kept gram occurs in each row of right-padded ids (B, top_k), the rows' lengths,
        and their similarities to the nearest training samples (B, 0 without ``knn_bits``): every row in
        one pass, the rows laid end to end with a 0 between them, each gram counted once by its index among
        ``_lookup``'s keys, then spread to the trees' and the neighbours' columns."""
        both, col, near_col = self._lookup()
        lengths = (x != 0).sum(1)
        flat = torch.cat([torch.cat([r[: int(n)], r.new_zeros(1)]) for r, n in zip(x, lengths, strict=True)])
        row = torch.repeat_interleave(torch.arange(len(x)), lengths + 1)
        width = len(both) + 1
        total = torch.zeros(len(x) * width, dtype=torch.int64)
        for _, at, u in self._kept(flat):
            total += torch.bincount(row[at] * width + u, minlength=len(total))
        total = total.view(len(x), width).float()
        grams = total.new_zeros(len(x), self.n_features + 1).index_add_(1, col, total)[:, :-1]
        if self.near is None:
            return grams, lengths, torch.zeros(len(x), 0)
        near = total.new_zeros(len(x), len(self.near.keys) + 1).index_add_(1, near_col, total)[:, :-1]
        return grams, lengths, self.near(near)

    def _weigh_rows(self, counts: Tensor, lengths: Tensor) -> Tensor:
        """What the classifier reads (B, top_k): TF-IDF weights for a linear head, frequencies (count /
        length) for trees."""
        if self.trees is not None:
            return counts / lengths.clamp(min=1)[:, None].float()
        return tfidf_rows(counts, self.idf)

    def gram_weights(self, ids: Tensor) -> Tensor:
        """What the classifier reads of the kept grams of one sequence, (top_k,)."""
        counts, lengths, _ = self._counts(ids[None])
        return self._weigh_rows(counts, lengths)[0]

    def _head(self, v: Tensor, lengths: Tensor, near: Tensor) -> Tensor:
        """Logits (B, n_classes) from gram weights (B, top_k), sequence lengths (B,) and similarities to
        the nearest training samples (B, 2 x classes, or B x 0)."""
        if self.trees is not None:
            return self.trees(torch.cat([v, torch.log1p(lengths.float())[:, None], near], dim=1)) + self.bias
        return v @ self.weight + self.bias

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, n_classes) of right-padded ids (0 is padding)."""
        self._check_input(x)
        if len(x) == 0:
            return x.new_zeros((0, self.n_classes), dtype=torch.float32)
        counts, lengths, near = self._counts(x)
        return self._head(self._weigh_rows(counts, lengths), lengths, near)

    def gram_parts(self, v: Tensor, length: int, target: int, near: Tensor | None = None) -> Tensor:
        """Each kept gram's part of the ``target`` logit for gram weights ``v`` (K,) of a sequence of
        ``length``: its weight times the linear model's, which add up to the logit (less the bias); for
        trees, the logit's drop when the gram is taken out (its similarities to training samples,
        ``near``, held as they are)."""
        if self.trees is None:
            return v * self.weight[:, target]
        present = torch.nonzero(v > 0).flatten()
        rows = v.repeat(len(present) + 1, 1)
        rows[torch.arange(1, len(present) + 1), present] = 0.0
        near = torch.zeros(1, 0) if near is None else near.reshape(1, -1)
        with torch.no_grad():
            logit = self._head(rows, torch.full((len(rows),), length), near.expand(len(rows), -1))[:, target]
        return torch.zeros_like(v).index_put_((present,), logit[0] - logit[1:])

    def nearest(self, ids: Tensor) -> list[tuple[int, float]]:
        """Each class and the estimated similarity of 1-D ``ids`` to its nearest training sample, the most
        similar first (what the tree head reads with ``knn_bits``; empty without)."""
        if self.near is None:
            return []
        sim = self._counts(ids[ids != 0][None])[2][0, : self.n_classes]
        return [(int(c), float(sim[c])) for c in torch.argsort(sim, descending=True, stable=True)]

    def top_grams(
        self, ids: Tensor, target: int, k: int
    ) -> list[tuple[list[int], float, float, float, float]]:
        """The ``k`` kept grams of ``ids`` that move the ``target`` logit most: (token ids, weight here
        (``gram_weights``), mean weight in training, part of the logit, share of all grams' absolute parts)."""
        ids = ids[ids != 0]
        counts, lengths, near = self._counts(ids[None])
        v = self._weigh_rows(counts, lengths)[0]
        part = self.gram_parts(v, len(ids), target, near)
        total = float(part.abs().sum()) or 1.0
        top = [int(j) for j in torch.argsort(part.abs(), descending=True, stable=True)[:k] if v[j] > 0]
        return [
            (gram_tokens(int(self.keys[j])), float(v[j]), float(self.feature_mean[j]), float(part[j]),
             abs(float(part[j])) / total)
            for j in top
        ]  # fmt: skip

    def token_attribution(self, ids: Tensor, target: int) -> Tensor:
        """Each token's share of the ``target`` logit, (L,) for the L real tokens of ``ids``: a gram's part
        (``gram_parts``), shared equally by its occurrences and their tokens."""
        ids = ids[ids != 0]
        counts, lengths, near = self._counts(ids[None])
        v = self._weigh_rows(counts, lengths)[0]
        per_use = self.gram_parts(v, len(ids), target, near) / counts[0].clamp(min=1.0)
        heat = torch.zeros(len(ids) + self.n_max)
        per_use = torch.cat([per_use, per_use.new_zeros(1)])[self._lookup()[1]]  # by key; 0: the trees' spare
        for k, at, u in self._kept(ids):
            n = (k >> N_SHIFT).float()
            share = per_use[u] / n
            for j in range(self.n_max):  # token j of every gram longer than j
                longer = n > j
                heat.index_add_(0, at[longer] + j, share[longer])
        return heat[: len(ids)]
