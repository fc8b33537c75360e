"""Choose the words of features version 6 (``convert.stringwords``) from a features cache's files.

Every file's words are found as the feature vector finds them (``contentfeatures.words_of``: runs of 4 to 24
ASCII letters in lower case, in its bytes and its UTF-16LE strings); each word in at least 5 files is ranked
by chi-squared between its presence and the file's label, and the ``--top`` first are written as the
module's word list, in that order. Reads sample bytes only (files and the shared zip's entries, in memory).

    .venv/bin/python scripts/string_words.py ~/.cache/malvision/caches/pe-features-v16 --top 1000 \\
        --write src/malvision/convert/stringwords.py

The ranking sees every file of the cache, so a cross-validation on the same files is optimistic by how much
choosing on them helps: ``benchmarks/string_words.py`` measures it with the words chosen on each fold's
training files only.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import date
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _corpus import SampleReader  # noqa: E402

from malvision.convert.contentfeatures import words_of  # noqa: E402
from malvision.io import atomic_writer  # noqa: E402

MIN_FILES = 5
_reader: SampleReader | None = None


def _words_of(source: str) -> set[bytes]:
    global _reader
    _reader = _reader or SampleReader()
    return set(words_of(_reader.read(source)))


def word_matrix(sources: list[str], workers: int = 2) -> tuple[list[bytes], object]:
    """The words in at least ``MIN_FILES`` files, and a sparse files x words presence matrix."""
    import scipy.sparse as sp
    from rich.console import Console
    from rich.progress import track

    with Pool(workers) as pool:
        found = pool.imap(_words_of, sources, chunksize=16)
        sets = list(track(found, total=len(sources), description="words", console=Console(stderr=True)))
    df = Counter(w for s in sets for w in s)
    vocab = sorted(w for w, n in df.items() if n >= MIN_FILES)
    index = {w: i for i, w in enumerate(vocab)}
    cols = [[index[w] for w in s if w in index] for s in sets]
    rows = np.repeat(np.arange(len(sets)), [len(c) for c in cols])
    flat = np.fromiter((c for row in cols for c in row), dtype=np.int64, count=len(rows))
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, flat)), shape=(len(sets), len(vocab)))
    return vocab, m


def ranked(vocab: list[bytes], m: object, y: np.ndarray, top: int) -> list[str]:
    """The ``top`` words by chi-squared between presence and label."""
    from sklearn.feature_selection import chi2

    score = np.nan_to_num(chi2(m, y)[0])
    return [vocab[i].decode() for i in np.argsort(-score, kind="stable")[:top]]


def module_text(words: list[str], command: str) -> str:
    lines, line = [], ""
    for w in words:
        if len(line) + len(w) + 1 > 116:
            lines.append(line)
            line = ""
        line = f"{line} {w}" if line else w
    lines.append(line)
    body = "\n".join(f"    {x}" for x in lines)
    return (
        '"""The words features version 6 counts in a file\'s bytes and UTF-16 strings (``convert.contentfeatures``).\n\n'
        "Chosen by ``scripts/string_words.py`` (the words of the default's training files ranked by chi-squared\n"
        f"between presence and label), {date.today().isoformat()}:\n\n    {command}\n\n"
        "Lower case, 4 to 24 letters (``contentfeatures.words_of``). Fixed: a vector of this version always\n"
        'holds these words, in this order."""\n\n'
        f'WORDS: tuple[str, ...] = tuple(\n    """\n{body}\n""".split()  # noqa: SIM905\n)\n'
    )


def main() -> None:
    from malvision.data.cache import CachedDataset
    from malvision.errors import MalvisionError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--top", type=int, default=1000)
    ap.add_argument("--write", type=Path, help="the module to write (default: print the words)")
    ap.add_argument("--matrix", type=Path, help="save the presence matrix and its words here (.npz, .txt)")
    args = ap.parse_args()
    try:
        ds = CachedDataset(args.cache)
    except MalvisionError as e:
        sys.exit(f"error: {e}")
    vocab, m = word_matrix([r.source for r in ds.records])
    if args.matrix:
        import scipy.sparse as sp

        sp.save_npz(args.matrix.with_suffix(".npz"), m)
        args.matrix.with_suffix(".txt").write_bytes(b"\n".join(vocab))
    y = (np.asarray(ds.labels) == list(ds.classes).index("malware")).astype(int)
    words = ranked(vocab, m, y, args.top)
    if args.write is None:
        print("\n".join(words))
        return
    cache = str(args.cache).replace(str(Path.home()), "~")
    command = f".venv/bin/python scripts/string_words.py {cache} --top {args.top} --write {args.write}"
    with atomic_writer(args.write) as f:
        f.write(module_text(words, command).encode())


if __name__ == "__main__":
    main()
