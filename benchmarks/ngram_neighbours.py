"""Are the opcode model's last errors near copies of training samples? Run on demand (not in CI).

    .venv/bin/python benchmarks/ngram_neighbours.py [--run RUN]

Reads the out-of-fold scores a `malvision benchmark --full` row left in ``RUN/fold*/scores.npz``
(default: the ``ngram-lgbm`` row of ``~/.cache/malvision/runs/big2015-full/stratified``) and the 1- to
4-gram counts ``benchmarks/ngram_search.py`` caches, on the same folds (``stratified_kfold``, seed 0).
For every test sample: the cosine similarity of its TF-IDF gram vector (``models.grams.tfidf``, the
linear head's, with idf from the fold's training rows) to its nearest training sample, and that sample's family (1-nearest-neighbour). If the
errors had near copies in training, a neighbour would fix them; if they have none, they are samples
unlike any the model learnt from. Writes benchmarks/results/ngram-neighbours.md.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from _corpus import CACHE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs
from ngram_search import DATA, ROOT, count_all, count_matrix

RUN = CACHE / "runs" / "big2015-full" / "stratified" / "ngram-lgbm"
BINS = (0.0, 0.5, 0.8, 0.95, 0.99, 1.01)


def neighbours(run: Path, z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per test sample (all folds): label, model's prediction, nearest training sample's label and
    similarity, and sequence length."""
    from malvision.data.splits import stratified_kfold
    from malvision.models.grams import idf_of, tfidf

    y, x = z["labels"], count_matrix(z)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("y", "model", "nn", "sim", "length")}
    for k, (tr, te) in enumerate(stratified_kfold(y, 5, random_state=0)):
        with np.load(run / f"fold{k}" / "scores.npz") as s:
            idx, pred = s["test_idx"], s["probs"].argmax(1)
        if not np.array_equal(np.sort(idx), np.sort(te)):
            raise SystemExit(f"error: {run}/fold{k}: not the folds of stratified_kfold(seed 0)")
        idf = idf_of(np.diff(x[tr].tocsc().indptr), len(tr))  # document frequency of the training rows
        sims = (tfidf(x[idx], idf) @ tfidf(x[tr], idf).T).toarray()
        for name, v in (("y", y[idx]), ("model", pred), ("nn", y[tr][sims.argmax(1)]), ("sim", sims.max(1)),
                        ("length", z["lengths"][idx])):  # fmt: skip
            cols[name].append(v)
        print(f"fold {k}: {int((pred != y[idx]).sum())} wrong", flush=True)
    return {k: np.concatenate(v) for k, v in cols.items()}


def report(r: dict[str, np.ndarray], families: list[str], run: Path) -> str:
    wrong, nn_wrong = r["model"] != r["y"], r["nn"] != r["y"]
    name = lambda i: families[int(i)]  # noqa: E731
    lines = [
        "# Do the opcode model's errors have near copies in training? (BIG2015, 5-fold CV)\n",
        f"`{command_line()}`; {cpu_model()}. Model: `{run.name}` (`{run}`), its out-of-fold predictions; "
        "similarity: cosine of TF-IDF 1- to 4-gram vectors (the linear n-gram head's sublinear TF-IDF, idf "
        "of the fold's training rows) "
        "to the nearest training sample of the fold.\n",
        f"- {len(wrong)} samples: the model gets {int(wrong.sum())} wrong, the nearest neighbour's family "
        f"{int(nn_wrong.sum())}; the neighbour would fix {int((wrong & ~nn_wrong).sum())} of the model's "
        f"errors and break {int((~wrong & nn_wrong).sum())} of its right answers.",
        "- Errors by (true family -> predicted): "
        + ", ".join(
            f"{name(a)} -> {name(b)} {n}"
            for (a, b), n in Counter(zip(r["y"][wrong], r["model"][wrong], strict=True)).most_common()
        )
        + ".",  # fmt: skip
        f"- Errors on samples of fewer than 100 opcodes: {int((wrong & (r['length'] < 100)).sum())} "
        f"(of {int((r['length'] < 100).sum())} such samples).\n",
        "| nearest training sample's similarity | samples | model wrong | neighbour's family wrong |",
        "|---|---|---|---|",
    ]
    for lo, hi in zip(BINS, BINS[1:], strict=False):
        m = (r["sim"] >= lo) & (r["sim"] < hi)
        lines.append(f"| {lo:.2f} to {min(hi, 1.0):.2f} | {int(m.sum())} | {int((m & wrong).sum())} | "
                     f"{int((m & nn_wrong).sum())} |")  # fmt: skip
    lines += ["", "Each error: true family, predicted, opcodes, nearest training sample's similarity and family.\n",
              "| true | predicted | opcodes | similarity | neighbour's family |", "|---|---|---|---|---|"]  # fmt: skip
    for i in np.flatnonzero(wrong)[np.argsort(-r["sim"][wrong])]:
        lines.append(f"| {name(r['y'][i])} | {name(r['model'][i])} | {int(r['length'][i]):,} | "
                     f"{r['sim'][i]:.3f} | {name(r['nn'][i])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=RUN, help="a `malvision benchmark --full` row folder")
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args()
    if not (a.run / "fold0" / "scores.npz").is_file():
        raise SystemExit(
            f"error: {a.run}: no fold scores; run `bash scripts/reproduce.sh big2015_full` first"
        )
    from malvision.evaluate.runner import open_cache

    families = list(open_cache(a.data).classes)
    write_report(report(neighbours(a.run, count_all(a.data, 1)), families, a.run),
                 ROOT / "benchmarks" / "results" / "ngram-neighbours.md")  # fmt: skip


if __name__ == "__main__":
    main()
