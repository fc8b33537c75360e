"""Token n-grams as exact int64 keys: counting them over a whole sequence in chunks, choosing them on
training rows (document frequency, chi-squared), weighing them (frequencies, sublinear TF-IDF) and
fitting a linear head on their TF-IDF.

Every 1- to 4-gram of token ids is one key (15 bits per id, ``n`` above them): no hash collisions, and
every kept gram reads back as its tokens (``gram_tokens``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from malvision.errors import ModelError

__all__ = [
    "check_sorted",
    "count_matrix",
    "frequencies",
    "gram_counts",
    "gram_keys",
    "gram_tokens",
    "idf_of",
    "linear_head",
    "select_grams",
    "tfidf",
    "tfidf_rows",
    "tree_input",
]

BITS = 15  # bits per token id in a key; larger ids count as UNK
N_SHIFT = 60  # the gram's length sits above 4 ids of 15 bits
MAX_N = 4
UNK = 1


def gram_keys(ids: Tensor, n_max: int, starts: int | None = None) -> tuple[Tensor, Tensor]:
    """Keys (int64) of every 1- to ``n_max``-gram of the 1-D ``ids`` that starts before ``starts``
    (default: anywhere), and where each one starts. A gram that holds a 0 (padding, or the gap between
    two sequences laid end to end) has a 0 slot in its key, which no gram of a real sequence has."""
    a = torch.where(ids >= 1 << BITS, UNK, ids).to(torch.int64)
    limit = len(a) if starts is None else starts
    keys, where, k = [], [], a
    for n in range(1, n_max + 1):
        if n > 1:
            k = (k[:-1] << BITS) | a[n - 1 :]
        if len(k) == 0:
            break
        keys.append(k[:limit] | (n << N_SHIFT))
        where.append(torch.arange(len(keys[-1])))
    return (torch.cat(keys), torch.cat(where)) if keys else (a[:0], a[:0])


def gram_counts(ids: Tensor, n_max: int, chunk_size: int) -> tuple[Tensor, Tensor]:
    """Distinct gram keys of a whole sequence and how often each occurs, counted ``chunk_size`` ids at
    a time (sorted keys, int64 counts)."""
    keys, counts = [], []
    for c in range(0, len(ids), chunk_size):
        k, n = torch.unique(
            gram_keys(ids[c : c + chunk_size + n_max - 1], n_max, chunk_size)[0], return_counts=True
        )
        keys.append(k)
        counts.append(n)
    if len(keys) == 1:
        return keys[0], counts[0]
    k, inverse = torch.unique(torch.cat(keys), return_inverse=True)
    return k, torch.zeros(len(k), dtype=torch.int64).index_add_(0, inverse, torch.cat(counts))


def count_matrix(x: Any, n_max: int, chunk_size: int, on_step: Any = None) -> tuple[Any, np.ndarray]:
    """The gram counts of whole sequences ``x`` (1-D id arrays) as a scipy CSR matrix (samples x grams,
    float32) and its columns' sorted keys; ``on_step(done, len(x) + 1)`` hears every 256 samples."""
    import scipy.sparse as sp

    per_doc = []
    for i, ids in enumerate(x):
        k, n = gram_counts(torch.from_numpy(np.asarray(ids, dtype=np.int64)), n_max, chunk_size)
        per_doc.append((k.numpy(), n.numpy()))
        if on_step is not None and (i + 1) % 256 == 0:
            on_step(i + 1, len(x) + 1)
    vocab, cols = np.unique(np.concatenate([k for k, _ in per_doc]), return_inverse=True)
    rows = np.repeat(np.arange(len(x)), [len(k) for k, _ in per_doc])
    values = np.concatenate([n for _, n in per_doc]).astype(np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(len(x), len(vocab))), vocab


def select_grams(counts: Any, y: np.ndarray, min_df: int, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The gram columns ``fit`` keeps of ``counts`` (scipy sparse, samples x grams), sorted: those found
    in at least ``min_df`` samples, the ``top_k`` of them by chi-squared on log counts; and every
    column's document frequency."""
    from sklearn.feature_selection import chi2

    df = np.diff(counts.tocsc().indptr)
    kept = np.flatnonzero(df >= min_df)
    if len(kept) > top_k:
        sub = counts[:, kept]
        sub.data = np.log1p(sub.data)
        score = np.nan_to_num(chi2(sub, y)[0])
        kept = np.sort(kept[np.argsort(-score, kind="stable")[:top_k]])
    return kept, df


def frequencies(counts: Any, lengths: np.ndarray) -> Any:
    """Each kept gram's count over its sample's length (scipy sparse in, CSR out)."""
    return counts.multiply(1.0 / np.asarray(lengths, dtype=np.float64)[:, None]).tocsr()


def idf_of(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Smoothed inverse document frequency of grams found in ``df`` of ``n_docs`` samples."""
    return np.log((1 + n_docs) / (1 + np.asarray(df, dtype=np.float64))) + 1.0


def tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Sublinear TF-IDF rows, l2-normalised (scipy sparse in, CSR out): what the linear head reads, and
    what ``forward`` computes for one sequence."""
    from sklearn.preprocessing import normalize

    tf = counts.astype(np.float64)
    tf.data = 1.0 + np.log(tf.data)
    return normalize(tf.multiply(idf).tocsr(), norm="l2")


def linear_head(
    rows: Any, y: np.ndarray, sample_weight: np.ndarray | None, classifier: str, c: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept grams, classes) weights and the biases of a linear head on TF-IDF rows: a one-vs-rest linear
    SVM (``classifier="svm"``) or a multinomial logistic regression, at inverse regularisation ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if classifier == "svm":
        clf = LinearSVC(C=c, random_state=seed, max_iter=5000)
    else:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(rows, y, sample_weight=sample_weight)
    w, b = clf.coef_.T, np.asarray(clf.intercept_)
    if w.shape[1] == 1:  # one column scores class 1: logits (-s/2, s/2) give its softmax sigmoid(s)
        w, b = np.hstack([-w / 2, w / 2]), np.array([-b[0] / 2, b[0] / 2])
    return w, b


def tree_input(freqs: Any, lengths: np.ndarray) -> np.ndarray:
    """What the tree head reads (float32, samples x kept + 1): the grams' frequencies, then the log of
    the sample's length."""
    length = np.asarray(lengths, dtype=np.float64)
    return np.hstack([freqs.toarray(), np.log1p(length)[:, None]]).astype(np.float32)


def check_sorted(keys: Tensor) -> None:
    """Refuse a checkpoint's gram keys out of order (every key search assumes them sorted)."""
    if bool((keys[1:] < keys[:-1]).any()):
        raise ModelError("ngram: the checkpoint's gram keys are not sorted")


def gram_tokens(key: int) -> list[int]:
    """The token ids of one gram key, first to last."""
    n = key >> N_SHIFT
    mask = (1 << BITS) - 1
    return [(key >> (BITS * (n - 1 - j))) & mask for j in range(n)]


def tfidf_rows(counts: Tensor, idf: Tensor) -> Tensor:
    """``tfidf`` of dense count rows (B, K) in torch: what a model computes when it scores."""
    tf = torch.where(counts > 0, 1.0 + torch.log(counts.clamp(min=1.0)), 0.0) * idf
    return tf / tf.norm(dim=1, keepdim=True).clamp(min=1e-12)
