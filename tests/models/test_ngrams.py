"""The n-gram model: exact gram counts at any chunk size, scikit-learn's TF-IDF, fit, save, explain."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from malvision.checkpoint import load_checkpoint, save_checkpoint
from malvision.convert.sequence import pad_batch
from malvision.errors import MalvisionError, ModelError
from malvision.export import export_onnx
from malvision.models import create_model, model_info
from malvision.models.grams import count_matrix, gram_counts, gram_keys, gram_tokens, idf_of, tfidf
from malvision.models.neighbours import planes


def _docs(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Three classes over ids 2..19 that differ only in which bigram they repeat (same unigram mix)."""
    rng = np.random.default_rng(seed)
    docs, ys = [], []
    for i in range(n):
        c = i % 3
        a = rng.integers(2, 20, int(rng.integers(30, 300)))
        pair = [(5, 6), (6, 5), (5, 5)][c]
        for p in rng.choice(len(a) - 1, size=len(a) // 6, replace=False):
            a[p], a[p + 1] = pair
        docs.append(a.astype(np.uint16))
        ys.append(c)
    return docs, np.array(ys)


def _naive(ids: list[int], n_max: int) -> Counter:
    return Counter(tuple(ids[i : i + n]) for n in range(1, n_max + 1) for i in range(len(ids) - n + 1))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_gram_counts_are_exact_at_any_chunk_size(chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    ids = rng.integers(1, 40_000, 57).tolist()  # ids over 15 bits count as UNK (1)
    ids[3:9] = [7, 8, 7, 8, 7, 8]
    keys, counts = gram_counts(torch.tensor(ids), 4, chunk)
    got = Counter({tuple(gram_tokens(int(k))): int(c) for k, c in zip(keys, counts, strict=True)})
    assert got == _naive([i if i < 1 << 15 else 1 for i in ids], 4)


def test_it_learns_word_order_and_matches_sklearn_tfidf() -> None:
    from sklearn.feature_extraction.text import TfidfTransformer

    docs, y = _docs(240, 0)
    model = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, n_max=2, top_k=50, min_df=1)
    model.fit(docs, y, None, seed=0)
    test, ty = _docs(90, 1)
    with torch.no_grad():
        logits = model(torch.from_numpy(pad_batch(test)))
    assert (logits.argmax(1).numpy() == ty).mean() > 0.95  # unigrams alone cannot tell the classes apart
    # The kept columns' weights are scikit-learn's sublinear TF-IDF of the training counts.
    cols = {int(k): j for j, k in enumerate(model.keys) if k >= 0}
    counts = np.zeros((len(docs), len(cols)))
    for i, d in enumerate(docs):
        for k, c in zip(*gram_counts(torch.from_numpy(d.astype(np.int64)), 2, 64), strict=True):
            if int(k) in cols:
                counts[i, cols[int(k)]] = int(c)
    want = TfidfTransformer(sublinear_tf=True).fit_transform(counts).toarray()
    got = torch.stack([model.gram_weights(torch.from_numpy(d.astype(np.int64))) for d in docs]).numpy()
    assert np.allclose(got[:, list(cols.values())], want, atol=1e-5)


def test_chunking_padding_and_checkpoints_change_nothing(tmp_path: Path) -> None:
    docs, y = _docs(60, 2)
    model = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, top_k=300, chunk_size=5)
    model.fit(docs, y, None, seed=0)
    whole = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, top_k=300)
    whole.load_state_dict(model.state_dict())
    x = torch.from_numpy(pad_batch(docs))
    with torch.no_grad():
        batched = model(x)
        assert torch.allclose(batched, whole(x), atol=1e-5)
        alone = torch.cat([model(torch.from_numpy(pad_batch([d]))) for d in docs[:5]])
        assert torch.allclose(batched[:5], alone, atol=1e-5)  # padding is never a token
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        model_name="ngram",
        model_kwargs={"top_k": 300, "chunk_size": 5},
        in_kind="opcodes",
        n_classes=3,
        vocab_size=22,
        spec={"kind": "opcodes", "max_len": 10_000, "vocab": [f"t{i}" for i in range(20)]},
        classes=["a", "b", "c"],
        seed=0,
        manifest_hash=None,
    )
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path).model(x), batched)
    with pytest.raises(MalvisionError, match="no ONNX form"):
        export_onnx(path)


def test_token_attribution_adds_up_to_the_logit() -> None:
    docs, y = _docs(60, 3)
    model = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, top_k=400, chunk_size=7)
    model.fit(docs, y, None, seed=0)
    ids = torch.from_numpy(docs[4].astype(np.int64))
    heat = model.token_attribution(ids, 1)
    assert heat.shape == ids.shape
    with torch.no_grad():
        logit = model(ids[None])[0, 1] - model.bias[1]
    assert float(heat.sum()) == pytest.approx(float(logit), abs=1e-4)


def test_it_reads_whole_samples_and_refuses_bad_settings() -> None:
    assert model_info("ngram").reads_whole and model_info("ngram").fitted
    for bad in ({"n_max": 5}, {"top_k": 0}, {"classifier": "forest"}, {"c": 0.0}):
        with pytest.raises(ModelError):
            create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **bad)
    with pytest.raises(ModelError, match="every class"):
        create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22).fit(
            [np.array([2, 3])], np.array([0]), None, seed=0
        )


def test_a_tree_head_learns_and_explains_by_taking_grams_out(tmp_path: Path) -> None:
    docs, y = _docs(240, 4)
    kw = {"n_max": 2, "top_k": 60, "classifier": "lgbm", "n_trees": 30, "num_leaves": 4}
    model = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **kw)
    model.fit(docs, y, None, seed=0)
    test, ty = _docs(90, 5)
    with torch.no_grad():
        logits = model(torch.from_numpy(pad_batch(test)))
    assert logits.shape == (90, 3) and (logits.argmax(1).numpy() == ty).mean() > 0.9
    ids = torch.from_numpy(test[0].astype(np.int64))
    grams = model.top_grams(ids, int(ty[0]), 3)
    assert grams and all(len(g[0]) in (1, 2) for g in grams)
    assert grams[0][0] in ([5, 6], [6, 5], [5, 5], [5], [6])  # the bigrams that tell the classes apart
    assert model.token_attribution(ids, int(ty[0])).shape == ids.shape
    state = model.state_dict()
    state["trees.left"] = state["trees.left"] + 10**6  # a damaged checkpoint is refused on load
    fresh = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **kw)
    with pytest.raises(RuntimeError, match="indices leave"):
        fresh.load_state_dict(state)


def test_rows_laid_end_to_end_count_as_apart() -> None:
    docs, y = _docs(60, 6)
    model = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, top_k=400, min_df=1)
    model.fit(docs, y, None, seed=0)
    both, lengths, _ = model._counts(torch.from_numpy(pad_batch(docs[:3])))  # one pass, a 0 between rows
    for i in range(3):
        alone, n, _ = model._counts(torch.from_numpy(docs[i].astype(np.int64))[None])
        assert torch.equal(both[i], alone[0]) and int(lengths[i]) == int(n[0]) == len(docs[i])
    keys, at = gram_keys(torch.tensor([5, 6, 0]), 2)
    assert at.tolist() == [0, 1, 2, 0, 1] and len(keys) == 5  # (6, 0) gets a key no real gram has


def test_col_wise_histograms_grow_the_same_trees() -> None:
    docs, y = _docs(240, 4)
    kw = {"n_max": 2, "top_k": 60, "classifier": "lgbm", "n_trees": 30, "num_leaves": 4}
    rows = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **kw)
    cols = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, col_wise=True, **kw)
    assert rows.trees.layout == {"force_row_wise": True} and cols.trees.layout == {"force_col_wise": True}
    for m in (rows, cols):
        m.fit(docs, y, None, seed=0)
    test, _ = _docs(90, 5)
    with torch.no_grad():
        a, b = (m(torch.from_numpy(pad_batch(test))) for m in (rows, cols))
    assert torch.equal(rows.keys, cols.keys) and torch.allclose(a, b, atol=1e-3)
    for bad in ({"col_wise": "yes"}, {"col_wise": True, "classifier": "svm"}):
        with pytest.raises(ModelError, match="col_wise"):
            create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **bad)


def test_simhash_planes_come_from_the_keys_alone() -> None:
    keys = np.arange(5000, dtype=np.int64) * 7919 - 3
    p = planes(keys, 64)
    assert p.dtype == np.int8 and set(np.unique(p).tolist()) == {-1, 1}
    assert np.array_equal(planes(keys[2040:2060], 64), p[2040:2060])  # no matter which keys come along
    assert np.array_equal(planes(keys[:3], 128)[:, :64], p[:3])  # more bits extend, never redraw
    assert abs(float(p.mean())) < 0.01 and abs(float(np.corrcoef(p[:, 0], p[:, 1])[0, 1])) < 0.05


def test_nearest_training_samples_stack_under_the_trees(tmp_path: Path) -> None:
    import scipy.sparse as sp

    docs, y = _docs(240, 7)
    kw = {"n_max": 2, "top_k": 60, "classifier": "lgbm", "n_trees": 30, "num_leaves": 4, "knn_bits": 1024,
          "knn_k": 80}  # fmt: skip
    model = create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **kw)
    model.fit(docs, y, None, seed=0)
    near = model.near
    assert near.signs.shape == (240, 128) and torch.equal(near.labels, torch.from_numpy(y))
    assert model.trees.n_features == 60 + 1 + 6
    test, ty = _docs(90, 8)
    x = torch.from_numpy(pad_batch(test))
    with torch.no_grad():
        logits = model(x)
    assert (logits.argmax(1).numpy() == ty).mean() > 0.9
    # The bits estimate the cosine of the TF-IDF rows: a test row's nearest training row of each class.
    cols = {int(k): j for j, k in enumerate(near.keys) if k >= 0}

    def counted(d: np.ndarray) -> dict[int, int]:
        keys, n = gram_counts(torch.from_numpy(d.astype(np.int64)), 2, 64)
        return dict(zip(keys.tolist(), n.tolist(), strict=True))

    train_counts, test_counts = (
        sp.csr_matrix([[counted(d).get(k, 0) for k in cols] for d in ds]) for ds in (docs, test)
    )
    df = np.asarray((train_counts > 0).sum(0)).ravel()
    idf = idf_of(df, len(docs))
    exact = (tfidf(test_counts, idf) @ tfidf(train_counts, idf).T).toarray()
    got = model._counts(x)[2].numpy()
    for c in range(3):
        assert np.abs(got[:, c] - exact[:, y == c].max(1)).max() < 0.12
    # Leave-one-out: a training row read as a new sample finds itself (similarity 1), fit's rows did not.
    own = model._counts(torch.from_numpy(pad_batch(docs[:4])))[2].numpy()
    assert np.allclose(own[np.arange(4), y[:4]], 1.0, atol=1e-5)
    # A checkpoint carries the training rows, however many, and refuses labels that do not match them.
    path = save_checkpoint(
        tmp_path / "m.pt", model, model_name="ngram", model_kwargs=kw, in_kind="opcodes", n_classes=3,
        vocab_size=22, spec={"kind": "opcodes", "max_len": 10_000, "vocab": [f"t{i}" for i in range(20)]},
        classes=["a", "b", "c"], seed=0, manifest_hash=None,
    )  # fmt: skip
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path).model(x), logits)
    state = model.state_dict()
    state["near.labels"] = state["near.labels"][:-1]
    with pytest.raises(ModelError, match="240 neighbours do not have one class id each"):
        create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **kw).load_state_dict(state)
    grams = model.top_grams(torch.from_numpy(test[0].astype(np.int64)), int(ty[0]), 3)
    assert grams and grams[0][0] in ([5, 6], [6, 5], [5, 5], [5], [6])
    for bad in ({"knn_bits": 12}, {"knn_bits": -8}, {"knn_bits": 64, "classifier": "svm"}, {"knn_k": 0}):
        with pytest.raises(ModelError, match="knn"):
            create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **bad)


def _knn_model(**kw: object) -> torch.nn.Module:
    base = {"n_max": 2, "top_k": 60, "classifier": "lgbm", "n_trees": 10, "num_leaves": 4, "knn_bits": 256,
            "knn_k": 80}  # fmt: skip
    return create_model("ngram", in_kind="opcodes", n_classes=3, vocab_size=22, **(base | kw))


def test_neighbours_refit_and_score_as_a_fresh_model_would() -> None:
    docs, y = _docs(90, 9)
    other, oy = _docs(60, 10)
    x = torch.from_numpy(pad_batch(docs))
    used = _knn_model()
    with torch.no_grad():
        used(x)  # scored before any fit, then fitted twice: no table of an earlier fit may remain
    used.fit(other, oy, None, seed=0)
    used.fit(docs, y, None, seed=0)
    fresh = _knn_model()
    fresh.fit(docs, y, None, seed=0)
    assert torch.equal(used.near.signs, fresh.near.signs)
    with torch.no_grad():
        assert torch.equal(used(x), fresh(x))
    # The bits fit keeps are the ones scoring makes: a training sample finds itself at similarity 1.
    own = fresh._counts(x)[2].numpy()
    assert np.allclose(own[np.arange(len(y)), y], 1.0, atol=1e-6)


def test_neighbours_leave_a_row_out_of_a_small_class_and_say_nothing_of_an_empty_row() -> None:
    docs, y = _docs(60, 11)
    keep = np.flatnonzero(y != 2).tolist() + np.flatnonzero(y == 2)[:2].tolist()  # class 2: two rows
    docs, y = [docs[i] for i in keep], y[keep]
    model = _knn_model()
    model.fit(docs, y, None, seed=0)
    near = model.near
    signs = torch.from_numpy(np.unpackbits(near.signs.numpy(), axis=1).astype(bool))
    a, b = np.flatnonzero(y == 2)
    out = near._similarities(signs[[a]], torch.tensor([False]), torch.tensor([a]))[0]
    rows = np.unpackbits(near.signs.numpy(), axis=1).astype(np.float64) * 2 - 1
    want = np.cos(np.pi * (256 - rows[a] @ rows[b]) / 512)
    # nearest and "third-nearest" of its own class: the one other row
    assert out[2] == pytest.approx(want, abs=1e-5) and out[3 + 2] == pytest.approx(want, abs=1e-5)
    empty = model._counts(torch.tensor([[21, 21, 21, 21]]))[2]  # a gram no training sample had
    assert torch.equal(empty, torch.full((1, 6), -1.0))


def test_a_damaged_neighbour_checkpoint_is_refused() -> None:
    docs, y = _docs(60, 12)
    model = _knn_model()
    model.fit(docs, y, None, seed=0)
    for key, damage in (
        ("near.labels", lambda t: t + 5),
        ("near.keys", lambda t: t.flip(0)),
        ("keys", lambda t: t.flip(0)),
    ):
        state = model.state_dict()
        state[key] = damage(state[key])
        with pytest.raises(ModelError, match="class id|not sorted"):
            _knn_model().load_state_dict(state)


def test_offsets_are_fitted_out_of_fold_and_added_to_the_trees_logits() -> None:
    import scipy.sparse as sp
    from scipy.special import log_softmax

    from malvision.data.splits import stratified_kfold

    docs, y = _docs(150, 12)
    plain, offset = _knn_model(), _knn_model(offset_folds=3)
    plain.fit(docs, y, None, seed=0)
    offset.fit(docs, y, None, seed=0)
    test, _ = _docs(45, 13)
    x = torch.from_numpy(pad_batch(test))
    with torch.no_grad():
        base, got = plain(x), offset(x)
    b = offset.bias
    assert abs(float(b.sum())) < 1e-5 and float(b.abs().max()) > 0  # the same trees, moved class by class
    assert torch.allclose(got, base + b, atol=1e-5) and not plain.bias.any()
    # The offsets are those that minimise the log-loss of each fold's logits from a fit on the other folds.
    logits = np.zeros((len(y), 3))
    for tr, te in stratified_kfold(y, 3, random_state=0):
        fold = _knn_model()
        fold.fit([docs[i] for i in tr], y[tr], None, seed=0)
        with torch.no_grad():
            logits[te] = fold(torch.from_numpy(pad_batch([docs[i] for i in te]))).double().numpy()

    def loss(v: np.ndarray) -> float:
        return -float(log_softmax(logits + v, axis=1)[np.arange(len(y)), y].mean())

    fitted = b.double().numpy()
    assert loss(fitted) < loss(np.zeros(3)) - 1e-4
    for step in np.eye(3) * 0.05:
        assert loss(fitted) <= min(loss(fitted + step), loss(fitted - step)) + 1e-6
    # _score_counts, which scores the folds, is forward's head on counts made elsewhere.
    keys = [gram_counts(torch.from_numpy(d.astype(np.int64)), 2, 64) for d in test]
    vocab = np.unique(np.concatenate([k.numpy() for k, _ in keys]))
    counts = sp.csr_matrix(
        np.array(
            [[dict(zip(k.tolist(), n.tolist(), strict=True)).get(int(v), 0) for v in vocab] for k, n in keys]
        )
    )
    lengths = np.array([len(d) for d in test], dtype=np.float64)
    made, made_vocab = count_matrix(test, 2, 64)  # what fit counts with: the same matrix
    assert np.array_equal(made_vocab, vocab) and (made != counts).nnz == 0
    assert np.allclose(offset._score_counts(counts, vocab, lengths), got.numpy(), atol=1e-4)
    for bad in (
        {"offset_folds": 1},
        {"offset_folds": -2},
        {"offset_folds": 3, "knn_bits": 0, "classifier": "svm"},
    ):
        with pytest.raises(ModelError, match="offset_folds"):
            _knn_model(**bad)
