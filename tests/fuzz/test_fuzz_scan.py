"""Fuzz the scanner's one path: any bytes give a ``Judged`` (a model input or a reason) or a
``MalvisionError``, and every model input scores to finite probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corpus import FILES, make_checkpoint
from fuzz.strategies import fuzz, mutated_pe
from malvision.errors import MalvisionError
from malvision.io import MemorySource
from malvision.scan import Scanner
from malvision.scan.readers import Judged

KINDS = ("image", "bytes", "opcodes")


@pytest.fixture(scope="module")
def scanners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scanner]:
    folder = tmp_path_factory.mktemp("fuzz-models")
    return {
        "image": Scanner(make_checkpoint(folder / "image.pt", kind="image", image_size=16), backend="torch"),
        "bytes": Scanner(make_checkpoint(folder / "bytes.pt", kind="bytes", max_len=2048), backend="torch"),
        "opcodes": Scanner(make_checkpoint(folder / "op.pt", kind="opcodes", max_len=64), backend="torch"),
    }


OPCODES = st.lists(
    st.sampled_from(["push", "mov", "call", "ret", "pop", "xor", "", "MOV", "add\r"]), max_size=200
)
INPUTS = st.one_of(
    st.binary(max_size=3000),
    mutated_pe(),
    st.sampled_from(sorted(FILES)).map(lambda name: FILES[name]()),
    OPCODES.map(lambda t: "\n".join(t).encode()),
)


def check(scanner: Scanner, data: bytes) -> None:
    try:
        p = scanner.prepare(MemorySource.of("f", data)) if data else None
    except MalvisionError as e:
        assert "\n" not in str(e)
        return
    if p is None:
        return
    assert isinstance(p, Judged) and p.size == len(data)
    if p.reason is not None:
        assert p.x is None and isinstance(p.reason, str) and p.reason and "\n" not in p.reason
        return
    assert p.x is not None and p.x.size > 0
    if scanner.spec.kind == "image":
        assert p.x.shape == (scanner.spec.image_size,) * 2 and p.x.dtype == np.uint8
    else:
        assert p.x.ndim == 1 and len(p.x) <= scanner.spec.max_len
    probs = scanner.infer([p.x])
    assert probs.shape == (1, 2) and np.isfinite(probs).all() and abs(probs.sum() - 1) < 1e-6
    verdict = scanner._verdict(p, probs[0])
    assert verdict.verdict in ("malware", "benign") and 0 <= (verdict.score or 0) <= 1


@fuzz(150)
@given(INPUTS, st.sampled_from(KINDS))
def test_prepare_any_bytes(scanners: dict[str, Scanner], data: bytes, kind: str) -> None:
    check(scanners[kind], data)
