"""scripts/string_words.py: the words of a file's strings, their ranking, and the module it writes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from repo_scripts import load_script


def _script():  # noqa: ANN202
    return load_script("string_words")


def test_words_are_ranked_by_how_well_presence_tells_the_labels_apart_and_written_as_a_module() -> None:
    sw = _script()
    vocab = [b"always", b"benignword", b"malwareword", b"noise"]
    m = sp.csr_matrix(np.array([[1, 1, 0, 1], [1, 1, 0, 0], [1, 0, 1, 1], [1, 0, 1, 0]], dtype=np.float32))
    words = sw.ranked(vocab, m, np.array([0, 0, 1, 1]), top=2)
    assert sorted(words) == ["benignword", "malwareword"]
    namespace: dict[str, object] = {}
    exec(sw.module_text(words * 40, "a command"), namespace)  # long enough to wrap
    assert namespace["WORDS"] == tuple(words * 40) and "a command" in str(namespace["__doc__"])
