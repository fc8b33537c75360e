"""The resource tree read with struct agrees with pefile, and survives damage and loops."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pefile
import pip

from corpus import minimal_pe
from malvision.convert.pefeatures import FEATURE_NAMES, features_of
from malvision.pe import parse
from malvision.pe.resources import read_resources, resource_window

LAUNCHERS = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))


def _ours(data: bytes):
    span = resource_window(parse(data[: 1 << 16]))
    return read_resources(data[span[0] : span[1]] if span else b"")


def test_the_tree_is_pefiles() -> None:
    assert LAUNCHERS
    for exe in LAUNCHERS:
        data = exe.read_bytes()
        root = pefile.PE(data=data).DIRECTORY_ENTRY_RESOURCE
        leaves = [
            (t.id, lang.data.lang, lang.data.struct.Size)
            for t in root.entries
            for name in t.directory.entries
            for lang in name.directory.entries
        ]
        res = _ours(data)
        assert res.types == tuple(t.id for t in root.entries), exe.name
        assert res.leaves == len(leaves) and sorted(res.languages) == sorted(lang for _, lang, _ in leaves)
        assert res.rcdata_max == max((size for t, _, size in leaves if t == 10), default=0)


def _features(data: bytes) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, features_of(data).tolist(), strict=True))


def test_a_launchers_resources_reach_its_features() -> None:
    f = _features(LAUNCHERS[0].read_bytes())
    assert f["res_has_icon"] == f["res_has_group_icon"] == f["res_has_manifest"] == 1
    assert (
        f["res_has_menu"] == f["res_has_rcdata"] == 0 and f["res_n_types"] == 4 and f["res_log_n_leaves"] > 2
    )
    assert not any(v for k, v in _features(minimal_pe()).items() if k.startswith("res_"))


def test_damage_and_loops_end_the_walk() -> None:
    rng = random.Random(0)
    data = bytearray(LAUNCHERS[0].read_bytes())
    lo, hi = resource_window(parse(bytes(data[: 1 << 16])))
    tree = bytes(data[lo:hi])
    for _ in range(300):
        bad = bytearray(tree)
        for _ in range(rng.randint(1, 40)):
            bad[rng.randrange(min(len(bad), 512))] = rng.randrange(256)
        res = read_resources(bytes(bad))
        assert len(res.types) <= 64 and res.leaves <= 4096
    # a directory whose one entry points back at itself, and one that claims 65,535 entries
    loop = struct.pack("<IIHHHH", 0, 0, 0, 0, 0, 1) + struct.pack("<II", 3, 0x80000000)
    assert read_resources(loop).types == (3,) and read_resources(loop).leaves == 0
    many = struct.pack("<IIHHHH", 0, 0, 0, 0, 0xFFFF, 0xFFFF)
    assert read_resources(many).types == () and read_resources(b"").parsed is False
