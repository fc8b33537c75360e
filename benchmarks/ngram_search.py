"""Search the ``ngram`` tree head's settings on the full BIG2015 opcode cache, run on demand (not in CI).

Counting every sample's 1- to 4-grams is the slow, repeated part of ``malvision benchmark --full``, so
this counts them ONCE (``malvision.models.grams.gram_counts``) into a sparse matrix cached under
``~/.cache/malvision/ngram-search/`` (never the repository), then runs what ``NgramModel.fit`` does per
fold (document frequency and chi-squared on the fold's training rows, the kept grams' frequencies and
the log length into LightGBM, through ``select_grams``, ``frequencies``, ``tree_input`` and
``LightGBMTrees.classifier``, with the inverse-frequency class weights of ``malvision.train``) on the folds ``malvision benchmark`` uses (``stratified_kfold``, seed 0, on the
de-duplicated cache). One fit per fold scores every round count of ``--at``.

The vocabulary is built once from every row, where the benchmark builds it from each fold's training
rows. With no cap on its size (the default) that gives the same kept grams: a token seen only in the
test rows makes grams with no training document, which are never kept. Only the column order differs
(ids are ranked by frequency), which moves LightGBM's column sampling: figures match the product's to
within that noise, not bit for bit. The product's own command confirms a winner.

    .venv/bin/python benchmarks/ngram_search.py --config top_k=3000           # the shipped recipe
    .venv/bin/python benchmarks/ngram_search.py --config top_k=8000,lr=0.05,rounds=800 --at 400,600,800

``calib=K`` fits one offset a class to the trees' log-odds on K inner folds of each training fold (what
``ngram``'s ``offset_folds`` does), nested inside the CV, so the offsets never see the fold they score.

Each result (config, fold, rounds: wrong, accuracy, macro-F1) is appended to
``~/.cache/malvision/ngram-search/results.jsonl`` (a rerun skips what is there), its test rows'
probabilities saved beside it in ``probs/``; ``--report`` writes every configuration tried to
benchmarks/results/ngram-search.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _corpus import CACHE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
DATA = CACHE / "caches" / "big2015-opcodes-full"
STORE = CACHE / "ngram-search"
REFERENCE = (
    "col_wise=True"  # the shipped recipe with col-wise histograms: the row the others are read against
)
DEFAULTS = dict(
    top_k=3000,
    min_df=5,
    rounds=300,
    lr=0.1,
    leaves=15,
    colsample=0.2,
    extra="",
    weight="inverse",
    col_wise=False,
    seed=0,  # LightGBM's (row and column sampling); the folds stay those of seed 0
    bag=1,  # average the probabilities of this many fits, seeds seed, seed + 1, ...
    window=2048,  # extra=head / tail: the grams of a sample's first / last this many opcodes
    window_k=500,  # ... the top this many of them by chi-squared, as frequencies in the window (long: 5-
    # and 6-grams over the whole sample, as frequencies in it)
    segments=8,  # extra=segments: the top opcodes' shares in this many equal parts of each sample
    knn_k=20000,  # extra=knn: the TF-IDF space's grams (top this many by chi-squared on the training rows)
    knn_dim=0,  # extra=knn: compare in this many dimensions (truncated SVD fitted on the training rows; 0: all)
    knn_bits=0,  # extra=knn: compare this many random-hyperplane sign bits a row (SimHash; 0: the vectors)
    knn_ranks="1+3",  # extra=knn: the similarity to the nearest, third-nearest, ... training row of each class
    class_k=300,  # extra=perclass: each class's top this many grams by chi-squared against the rest
    calib=0,  # fit per-class offsets to the log-odds on this many inner folds of the training rows (0: none)
    extra_trees=False,  # LightGBM's extremely randomised trees (one random threshold a feature at each split)
)


def count_all(data: Path, threads: int) -> dict[str, np.ndarray]:
    """Every sample's gram counts (CSR parts, grams in at least 2 samples), lengths and labels."""
    import torch

    from malvision.evaluate.runner import open_cache
    from malvision.models.grams import gram_counts

    path = STORE / "counts.npz"
    if path.is_file():
        with np.load(path) as z:
            return dict(z)
    torch.set_num_threads(threads)
    ds = open_cache(data)
    ds.fit_vocab(range(len(ds)))
    keys, counts, lengths = [], [], []
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ids = np.asarray(ds[i][0], dtype=np.int64)
        k, n = gram_counts(torch.from_numpy(ids), 4, 65_536)
        keys.append(k.numpy())
        counts.append(n.numpy().astype(np.float32))
        lengths.append(len(ids))
        if (i + 1) % 1000 == 0:
            print(f"counted {i + 1} of {len(ds)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    vocab, cols = np.unique(np.concatenate(keys), return_inverse=True)
    df = np.bincount(cols, minlength=len(vocab))
    keep = df >= 2  # a gram in one sample has a training df < 2 in every fold: never kept
    remap = np.cumsum(keep) - 1
    mask = keep[cols]
    sizes = np.array([len(k) for k in keys])
    row_of = np.repeat(np.arange(len(keys)), sizes)[mask]
    out = {
        "indptr": np.concatenate([[0], np.cumsum(np.bincount(row_of, minlength=len(keys)))]).astype(np.int64),
        "indices": remap[cols[mask]].astype(np.int32),
        "data": np.concatenate(counts)[mask],
        "keys": vocab[keep],
        "lengths": np.asarray(lengths, dtype=np.int64),
        "labels": np.asarray(ds.labels, dtype=np.int64),
    }
    STORE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    print(
        f"counted {len(ds)} samples, {len(out['keys'])} grams in 2+ samples ({time.perf_counter() - t0:.0f} s)"
    )
    return out


def each_sample(data: Path) -> Iterator[np.ndarray]:
    """Every sample's opcode ids (int64), under a vocabulary of every row (ids ranked by frequency,
    after the two specials), in cache order."""
    from malvision.evaluate.runner import open_cache

    ds = open_cache(data)
    ds.fit_vocab(range(len(ds)))
    for i in range(len(ds)):
        yield np.asarray(ds[i][0], dtype=np.int64)


def in_two_or_more(rows: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """Each sample's (distinct keys, counts) as a CSR matrix, samples x the keys found in 2 or more samples
    (sorted; a key of one sample has a training document frequency below 2 in every fold: never kept)."""
    import scipy.sparse as sp

    vocab, cols = np.unique(np.concatenate([k for k, _ in rows]), return_inverse=True)
    row_of = np.repeat(np.arange(len(rows)), [len(k) for k, _ in rows])
    m = sp.csr_matrix(
        (np.concatenate([n for _, n in rows]).astype(np.float32), (row_of, cols)),
        shape=(len(rows), len(vocab)),
    )
    return m[:, np.diff(m.tocsc().indptr) >= 2].tocsr()


def count_windows(data: Path, window: int) -> dict[str, Any]:
    """The 1- to 4-gram counts of every sample's first and last ``window`` opcodes (``in_two_or_more``,
    each side its own keys): where a file infector's code or a packer's stub would sit."""
    import scipy.sparse as sp
    import torch

    from malvision.models.grams import gram_counts

    paths = {side: STORE / f"windows-{window}-{side}.npz" for side in ("head", "tail")}
    if not all(p.is_file() for p in paths.values()):
        rows: dict[str, list] = {side: [] for side in paths}
        for a in each_sample(data):
            ids = torch.from_numpy(a)
            for side, w in (("head", ids[:window]), ("tail", ids[-window:])):
                rows[side].append([t.numpy() for t in gram_counts(w, 4, window)])
        STORE.mkdir(parents=True, exist_ok=True)
        for side, path in paths.items():
            sp.save_npz(path, in_two_or_more(rows[side]))
    return {side: sp.load_npz(path).tocsr() for side, path in paths.items()}


def count_long(data: Path, n_values: tuple[int, ...] = (5, 6)) -> Any:
    """Every sample's 5- and 6-grams (longer than ``gram_counts``' 4 ids fit one key) as 64-bit hashes
    (a polynomial in the ids, wrapping), counted (``in_two_or_more``)."""
    import scipy.sparse as sp

    path = STORE / f"long-{'-'.join(map(str, n_values))}.npz"
    if not path.is_file():
        rows = []
        with np.errstate(over="ignore"):
            for ids in each_sample(data):
                a = ids.astype(np.uint64)
                hs = []
                for n in n_values:
                    if len(a) < n:
                        continue
                    h = np.full(len(a) - n + 1, np.uint64(n))
                    for j in range(n):
                        h = h * np.uint64(0x9E3779B97F4A7C15) + a[j : len(a) - n + 1 + j]
                    hs.append(h)
                rows.append(np.unique(np.concatenate(hs), return_counts=True) if hs else (a[:0], a[:0]))
        STORE.mkdir(parents=True, exist_ok=True)
        sp.save_npz(path, in_two_or_more(rows))
    return sp.load_npz(path).tocsr()


def count_skip(data: Path, gaps: tuple[int, ...] = (2, 3, 4)) -> Any:
    """Every sample's gapped pairs (opcode ``a``, the opcode ``d`` places after it) for each ``d`` of
    ``gaps``, counted (``in_two_or_more``): pairs that survive junk instructions inserted between them."""
    import scipy.sparse as sp

    path = STORE / f"skip-{'-'.join(map(str, gaps))}.npz"
    if not path.is_file():
        rows = []
        for ids in each_sample(data):
            hs = [(np.int64(d) << 40) | (ids[:-d] << 20) | ids[d:] for d in gaps if len(ids) > d]
            rows.append(np.unique(np.concatenate(hs), return_counts=True) if hs else (ids[:0], ids[:0]))
        STORE.mkdir(parents=True, exist_ok=True)
        sp.save_npz(path, in_two_or_more(rows))
    return sp.load_npz(path).tocsr()


def count_segments(data: Path, n_seg: int, n_tokens: int = 128) -> np.ndarray:
    """Each sample cut into ``n_seg`` equal parts, each part's share of the ``n_tokens`` most frequent
    opcodes and of the rest (samples x n_seg x n_tokens + 1, float32): where in the file what code is."""
    path = STORE / f"segments-{n_seg}-{n_tokens}.npy"
    if not path.is_file():
        shares = []
        for ids in each_sample(data):
            col = np.minimum(np.maximum(ids - 2, 0), n_tokens)  # ids ranked by frequency, after the specials
            row = np.zeros((n_seg, n_tokens + 1), dtype=np.float32)
            for j, part in enumerate(np.array_split(col, n_seg)):
                if len(part):
                    row[j] = np.bincount(part, minlength=n_tokens + 1) / len(part)
            shares.append(row)
        STORE.mkdir(parents=True, exist_ok=True)
        np.save(path, np.stack(shares))
    return np.load(path)


def svm_scores(x: Any, y: np.ndarray, tr: np.ndarray, te: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    """The ``ngram`` row's linear SVM (top 100,000 grams by chi-squared, min_df 2, sublinear TF-IDF) as
    decision values: out of fold on the training rows ``tr`` (an inner 5-fold split, grams and IDF chosen
    on each inner training part), and from a fit on all of ``tr`` on ``te``; for a stack under the trees."""
    from sklearn.svm import LinearSVC

    from malvision.data.splits import stratified_kfold
    from malvision.models.grams import idf_of, select_grams, tfidf

    def fit_score(a: np.ndarray, b: np.ndarray, wa: np.ndarray) -> np.ndarray:
        kept, df = select_grams(x[a], y[a], 2, 100_000)
        idf = idf_of(df[kept], len(a))
        clf = LinearSVC(C=1.0, random_state=0, max_iter=5000)
        clf.fit(tfidf(x[a][:, kept], idf), y[a], sample_weight=wa)
        return clf.decision_function(tfidf(x[b][:, kept], idf))

    oof = np.zeros((len(tr), int(y.max()) + 1))
    for a, b in stratified_kfold(y[tr], 5, random_state=0):
        oof[b] = fit_score(tr[a], tr[b], w[a])
    return [oof, fit_score(tr, te, w)]


def knn_similarities(
    x: Any,
    y: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
    top_k: int,
    dim: int = 0,
    bits: int = 0,
    ranks: tuple[int, ...] = (1, 3),
) -> list[np.ndarray]:
    """For each row of ``tr`` and of ``te``, its cosine similarity (sublinear TF-IDF over the ``top_k``
    grams chi-squared ranks first on ``tr``; with ``dim``, its truncated SVD to that many dimensions,
    fitted on ``tr``: what a model could keep of its training rows, 2 bytes a number) to the nearest and to
    the third-nearest training row of each class (``ranks``): 2 x classes columns, for a stack under the trees. A
    training row is left out of its own neighbours (leave-one-out), so its columns read as a test row's
    would. With ``bits``, each row is kept as that many sign bits of random projections (SimHash: what a
    model could keep, ``bits`` / 8 bytes a row) and the similarity is cos(pi x the share of bits that
    differ), the angle the bits estimate."""
    from sklearn.preprocessing import normalize

    from malvision.models.grams import idf_of, select_grams, tfidf

    kept, df = select_grams(x[tr], y[tr], 2, top_k)
    idf = idf_of(df[kept], len(tr))
    svd = None
    if dim:
        from sklearn.decomposition import TruncatedSVD

        svd = TruncatedSVD(dim, random_state=0).fit(tfidf(x[tr][:, kept], idf))

    planes = np.random.default_rng(0).standard_normal((len(kept), bits)).astype(np.float32) if bits else None

    def project(m: Any) -> Any:
        if planes is not None:
            return np.where(np.asarray(m @ planes) >= 0, 1.0, -1.0).astype(np.float32)
        return m if svd is None else normalize(svd.transform(m)).astype(np.float16).astype(np.float32)

    train = project(tfidf(x[tr][:, kept], idf))
    train = train if isinstance(train, np.ndarray) else train.astype(np.float32).toarray()
    n_classes = int(y.max()) + 1
    out = []
    for rows, own in ((tr, True), (te, False)):
        feats = np.zeros((len(rows), len(ranks) * n_classes), dtype=np.float32)
        for lo in range(0, len(rows), 1024):
            part = rows[lo : lo + 1024]
            sim = np.asarray(project(tfidf(x[part][:, kept], idf)) @ train.T, dtype=np.float32)
            if bits:  # +-1 rows: the dot is bits - 2 x (bits that differ)
                sim = np.cos(np.pi * (bits - sim) / (2 * bits))
            if own:
                sim[np.arange(len(part)), np.arange(lo, lo + len(part))] = -1.0
            for c in range(n_classes):
                s = np.sort(sim[:, y[tr] == c], axis=1)
                for j, rank in enumerate(ranks):
                    feats[lo : lo + len(part), j * n_classes + c] = s[:, -min(rank, s.shape[1])]
        out.append(feats)
    return out


def count_matrix(z: dict[str, np.ndarray]) -> Any:
    """The cached counts as a scipy CSR matrix, samples x grams."""
    import scipy.sparse as sp

    return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(len(z["labels"]), len(z["keys"])))


def features(
    x: Any,
    keys: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray,
    tr: np.ndarray,
    rows: list[np.ndarray],
    cfg: dict,
    counted: dict[str, Any],
    stacked: list[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """What ``NgramModel.fit`` keeps and the tree head reads, for training rows ``tr``, of each of ``rows``
    (``x``: the sparse counts, one column per gram key of ``keys``); ``extra`` adds ``logcount`` (each
    kept gram's log count), ``entropy`` (each row's entropy over its 1-, 2-, 3- and 4-grams), ``head``
    and ``tail`` (the ``window_k`` grams of ``counted[side]``, the first / last ``window`` opcodes' counts,
    that chi-squared ranks first on the training rows, as frequencies in the window) and ``segments``
    (``counted["segments"]``: the top opcodes' shares in equal parts of each sample) and ``long`` (the
    ``window_k`` 5- and 6-grams of the whole sample first by chi-squared), ``skip`` (the ``window_k`` gapped
    pairs of ``count_skip`` first by chi-squared) and ``perclass`` (each class's ``class_k`` grams first
    by chi-squared against the rest, beside the ``top_k``); ``stacked`` holds
    more columns for each of ``rows`` (``svm``: ``svm_scores``; ``knn``: ``knn_similarities``)."""
    from malvision.models.grams import frequencies, select_grams, tree_input

    kept, _ = select_grams(x[tr], y[tr], cfg["min_df"], cfg["top_k"])
    extras = [e for e in cfg["extra"].split("+") if e]
    if "perclass" in extras:  # and each class's own top grams against the rest (rare classes' grams too)
        own = [
            select_grams(x[tr], (y[tr] == c).astype(int), cfg["min_df"], cfg["class_k"])[0]
            for c in np.unique(y)
        ]
        kept = np.union1d(kept, np.concatenate(own))
    window_kept = {
        side: select_grams(counted[side][tr], y[tr], cfg["min_df"], cfg["window_k"])[0]
        for side in ("head", "tail", "long", "skip")
        if side in extras
    }
    out = []
    for i, r in enumerate(rows):
        c = x[r][:, kept]
        parts = [tree_input(frequencies(c, lengths[r]), lengths[r])]
        for side, cols in window_kept.items():
            span = lengths[r] if side in ("long", "skip") else np.minimum(lengths[r], cfg["window"])
            parts.append(frequencies(counted[side][r][:, cols], span).toarray())
        if "logcount" in extras:
            parts.append(np.log1p(c.toarray()))
        if "segments" in extras:
            parts.append(counted["segments"][r].reshape(len(r), -1))
        if stacked is not None:
            parts.append(stacked[i])
        if "entropy" in extras:  # per-sample entropy of the distribution of all its n-grams, n = 1..4
            full = x[r]
            n_of = (keys[full.indices] >> 60).astype(np.int64)
            ent = np.zeros((len(r), 4))
            for i in range(len(r)):
                lo, hi = full.indptr[i], full.indptr[i + 1]
                d, nn = full.data[lo:hi], n_of[lo:hi]
                for n in range(1, 5):
                    p = d[nn == n]
                    if p.size:
                        p = p / p.sum()
                        ent[i, n - 1] = -(p * np.log(p)).sum()
            parts.append(ent)
        out.append(np.hstack(parts).astype(np.float32))
    return out, kept


def fit_head(
    z: dict[str, np.ndarray], x: Any, y: np.ndarray, lengths: np.ndarray, tr: np.ndarray, te: np.ndarray,
    cfg: dict, counted: dict[str, Any], threads: int,
) -> tuple[list, np.ndarray, np.ndarray]:  # fmt: skip
    """The tree head(s) ``cfg`` grows on rows ``tr``, and the rows ``te`` as they read them."""
    from malvision.models.trees import LightGBMTrees
    from malvision.train import class_weights

    n_classes = int(y.max()) + 1
    extras = set(cfg["extra"].split("+"))
    w = class_weights(y[tr], n_classes).numpy()[y[tr]]
    if cfg["weight"] == "sqrt":
        w = np.sqrt(w)
    elif cfg["weight"] == "none":
        w = np.ones_like(w)
    w = w / w.mean()
    stacked = svm_scores(x, y, tr, te, w) if "svm" in extras else None
    if "knn" in extras:
        ranks = tuple(int(r) for r in str(cfg["knn_ranks"]).split("+"))
        near = knn_similarities(x, y, tr, te, cfg["knn_k"], cfg["knn_dim"], cfg["knn_bits"], ranks)
        stacked = near if stacked is None else [np.hstack(p) for p in zip(stacked, near, strict=True)]
    (ftr, fte), kept = features(x, z["keys"], y, lengths, tr, [tr, te], cfg, counted, stacked)
    head = LightGBMTrees(
        in_kind="features", n_classes=n_classes, n_features=ftr.shape[1], n_trees=cfg["rounds"],
        num_leaves=cfg["leaves"], learning_rate=cfg["lr"], min_child_samples=3, colsample=cfg["colsample"],
        threads=threads, col_wise=cfg["col_wise"], extra_trees=cfg["extra_trees"],
    )  # fmt: skip  # the parameters NgramModel's head grows with
    fits = [
        head.classifier(seed).fit(ftr, y[tr], sample_weight=w)
        for seed in range(cfg["seed"], cfg["seed"] + cfg["bag"])
    ]
    return fits, fte, kept


def run_config(
    z: dict[str, np.ndarray], data: Path, cfg: dict, at: list[int], threads: int, done: set, only: list[int]
) -> None:
    from malvision.calibration import fit_class_offsets
    from malvision.data.splits import stratified_kfold
    from malvision.evaluate.metrics import classification_metrics

    y, lengths = z["labels"], z["lengths"]
    x = count_matrix(z)
    classes = [str(c) for c in range(int(y.max()) + 1)]
    name = ",".join(f"{k}={v}" for k, v in cfg.items() if DEFAULTS.get(k) != v) or "shipped"
    extras = set(cfg["extra"].split("+"))
    counted = count_windows(data, cfg["window"]) if {"head", "tail"} & extras else {}
    if "segments" in extras:
        counted["segments"] = count_segments(data, cfg["segments"])
    if "long" in extras:
        counted["long"] = count_long(data)
    if "skip" in extras:
        counted["skip"] = count_skip(data)
    for k, (tr, te) in enumerate(stratified_kfold(y, 5, random_state=0)):
        if (name, k) in done or (only and k not in only):
            continue
        t0 = time.perf_counter()
        fits, fte, kept = fit_head(z, x, y, lengths, tr, te, cfg, counted, threads)
        offsets = np.zeros(len(classes))
        if cfg["calib"]:  # per-class offsets to the log-odds, fitted on inner out-of-fold scores of tr
            inner = np.zeros((len(tr), len(classes)))
            for itr, ite in stratified_kfold(y[tr], cfg["calib"], random_state=0):
                ifits, ifte, _ = fit_head(z, x, y, lengths, tr[itr], tr[ite], cfg, counted, threads)
                inner[ite] = np.mean([c.booster_.predict(ifte, raw_score=True) for c in ifits], axis=0)
            offsets = fit_class_offsets(inner, y[tr])
            print(f"fold {k}: offsets {np.round(offsets, 2).tolist()}", flush=True)
        seconds = time.perf_counter() - t0
        with (STORE / "results.jsonl").open("a") as f:
            for r in [a for a in at if a <= cfg["rounds"]] or [cfg["rounds"]]:
                probs = np.zeros((len(te), len(classes)))
                for clf in fits:
                    raw = clf.booster_.predict(fte, raw_score=True, num_iteration=r) + offsets
                    p = np.exp(raw - raw.max(1, keepdims=True))
                    probs += p / p.sum(1, keepdims=True) / len(fits)
                (STORE / "probs").mkdir(exist_ok=True)
                np.save(STORE / "probs" / f"{name};fold={k};rounds={r}.npy", probs.astype(np.float32))
                m = classification_metrics(y[te], probs, classes)
                wrong = int((probs.argmax(1) != y[te]).sum())
                plain = np.mean(
                    [c.booster_.predict(fte, raw_score=True, num_iteration=r) for c in fits], axis=0
                )
                wrong_plain = int((plain.argmax(1) != y[te]).sum())
                row = dict(config=name, cfg=cfg, fold=k, rounds=r, wrong=wrong, accuracy=m["accuracy"],
                           macro_f1=m["macro_f1"], seconds=seconds, threads=threads, n_test=len(te),
                           n_kept=len(kept), wrong_plain=wrong_plain, offsets=offsets.tolist())  # fmt: skip
                f.write(json.dumps(row) + "\n")
                print(f"{name} fold {k} rounds {r}: {wrong} wrong ({wrong_plain} plain), acc {m['accuracy']:.4f} "
                      f"macro-F1 {m['macro_f1']:.4f} ({seconds:.0f} s)", flush=True)  # fmt: skip


def load_results() -> list[dict]:
    path = STORE / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def report() -> str:
    """Every configuration tried: folds done, wrong over those folds against the reference row
    (``col_wise=True``: the shipped recipe, col-wise) of the same LightGBM seed on the same folds, mean
    accuracy and macro-F1."""
    results = load_results()
    by: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        by.setdefault((r["config"], r["rounds"]), []).append(r)

    def ref_name(seed: int) -> str:
        return REFERENCE + (f",seed={seed}" if seed else "")

    seeds = {r["cfg"].get("seed", 0) for r in results}
    ref = {
        (s, r["fold"]): r["wrong"]
        for s in seeds
        for r in results
        if r["config"] == ref_name(s) and r["rounds"] == 300
    }
    lines = [
        "# ngram tree-head search (BIG2015 opcodes, whole samples)\n",
        f"`{command_line()}`; {datetime.now(UTC):%Y-%m-%d}, {cpu_model()}, 2 cores shared with other jobs.\n",
        "Folds: `stratified_kfold(labels, 5, random_state=0)` on the 8,887 de-duplicated samples (those of",
        "`malvision benchmark --full`). Unlisted settings are the shipped recipe's: "
        + ", ".join(f"{k}={v}" for k, v in DEFAULTS.items())
        + f". `reference wrong`: the `{REFERENCE}` row's errors on the same folds, with the same seed;",
        "`without offsets`: a `calib` row's own trees' errors before the offsets (the same fits).",
        "Settings were compared on these CV folds themselves (no nested split): read the best row as",
        "optimistic by the number of rows tried. A row with fewer than 5 folds was stopped early.\n",
        "| config | rounds | folds | wrong | reference wrong | without offsets | accuracy (mean ± std) | macro-F1 "
        "| threads | fit s/fold |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, rounds), rs in sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0][0], kv[0][1])):
        acc = np.array([r["accuracy"] for r in rs])
        f1 = np.array([r["macro_f1"] for r in rs])
        keys = [(r["cfg"].get("seed", 0), r["fold"]) for r in rs]
        base = sum(ref[k] for k in keys) if all(k in ref for k in keys) else "-"
        plain = sum(r["wrong_plain"] for r in rs) if all("wrong_plain" in r for r in rs) else "-"
        lines.append(
            f"| {name} | {rounds} | {len(rs)} | {sum(r['wrong'] for r in rs)} | {base} | {plain} "
            f"| {acc.mean():.4f} ± {acc.std():.4f} | {f1.mean():.4f} | {rs[0].get('threads', '-')} "
            f"| {np.mean([r['seconds'] for r in rs]):.0f} |"
        )
    both = wrong_under_both_seeds(results)
    if both:
        lines += [
            "\nSamples wrong under both LightGBM seeds 0 and 1 (from the kept probabilities, 5 folds each):",
            "the errors a seed does not move; and those wrong when the two seeds' probabilities are averaged",
            "(a bag of the two fits).\n",
            "| config | wrong, seed 0 | wrong, seed 1 | wrong under both | wrong, the two averaged |",
            "|---|---|---|---|---|",
            *(f"| {name} | {a} | {b} | {n} | {m} |" for name, (a, b, n, m) in both.items()),
        ]
    return "\n".join(lines) + "\n"


def wrong_under_both_seeds(results: list[dict]) -> dict[str, tuple[int, int, int, int]]:
    """For each config run with seeds 0 and 1 on all 5 folds with probabilities kept: the samples each
    seed gets wrong, those both do, and those the mean of the two seeds' probabilities gets wrong."""
    from malvision.data.splits import stratified_kfold

    counts = STORE / "counts.npz"
    if not counts.is_file():
        return {}
    with np.load(counts) as z:
        y = z["labels"]
    folds = stratified_kfold(y, 5, random_state=0)

    def probs(name: str) -> np.ndarray | None:
        out = np.zeros((len(y), int(y.max()) + 1))
        for k, (_, te) in enumerate(folds):
            path = STORE / "probs" / f"{name};fold={k};rounds=300.npy"
            if not path.is_file():
                return None
            out[te] = np.load(path)
        return out

    def settings(cfg: dict) -> str:  # a config's settings but the seed, in one order
        return json.dumps({**DEFAULTS, **cfg, "seed": None}, sort_keys=True)

    name_of = {(settings(r["cfg"]), r["cfg"].get("seed", 0)): r["config"] for r in results}
    out = {}
    for (key, seed), name in sorted(name_of.items(), key=lambda kv: kv[1]):
        other = name_of.get((key, 1))
        if seed == 0 and other is not None:
            p0, p1 = probs(name), probs(other)
            if p0 is not None and p1 is not None:
                w0, w1, mean = (p.argmax(1) != y for p in (p0, p1, (p0 + p1) / 2))
                out[name] = (int(w0.sum()), int(w1.sum()), int((w0 & w1).sum()), int(mean.sum()))
    return out


def parse(text: str) -> dict:
    cfg = dict(DEFAULTS)
    for part in filter(None, text.split(",")):
        k, v = part.split("=", 1)
        kind = type(DEFAULTS[k])
        cfg[k] = (v.lower() in ("1", "true", "yes")) if kind is bool else kind(v)
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--config", action="append", default=[], help="key=value,... over the shipped recipe")
    ap.add_argument("--at", default="", help="round counts to score, e.g. 300,600,1000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folds", default="", help="run only these folds, e.g. 0,1,2 (default: all five)")
    ap.add_argument("--report", action="store_true")
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "ngram-search.md",
        help="where --report writes (every row in this machine's results.jsonl)",
    )
    a = ap.parse_args()
    if a.config:
        z = count_all(a.data, a.threads)
        done = {(r["config"], r["fold"]) for r in load_results()}
        for text in a.config:
            only = [int(v) for v in a.folds.split(",") if v]
            run_config(z, a.data, parse(text), [int(v) for v in a.at.split(",") if v], a.threads, done, only)
    if a.report:
        write_report(report(), a.out)


if __name__ == "__main__":
    main()
