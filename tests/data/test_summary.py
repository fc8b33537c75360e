"""summarize: counts per class and group, size statistics, cache spec."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from malvision.convert.spec import ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.data.readers import CsvDataset
from malvision.data.summary import summarize

MakeFile = Callable[[str, bytes], Path]


def test_summary_of_raw_and_cache(make_file: MakeFile, tmp_path: Path) -> None:
    for name, n in {"a": 100, "b": 300, "c": 200, "d": 1000}.items():
        make_file(f"d/{name}", b"x" * n)
    make_file(
        "d/labels.csv", b"filename,label,group\na,benign,p1\nb,benign,p2\nc,malware,f1\nd,malware,f1\nz,x,y\n"
    )
    s = summarize(CsvDataset(tmp_path / "d/labels.csv"))
    assert s.n == 4 and s.format == "csv" and s.n_groups == 3
    assert [(c.label, c.n, c.groups, c.median_size) for c in s.classes] == [
        ("benign", 2, 2, 200.0),
        ("malware", 2, 1, 600.0),
    ]
    assert s.sizes == (100, 250.0, 400.0, 1000)
    assert s.top_groups[0] == ("f1", 2) and len(s.skipped) == 1 and s.spec is None
    write_cache(CsvDataset(tmp_path / "d/labels.csv"), tmp_path / "c", ConvertSpec(kind="bytes", max_len=64))
    sc = summarize(CachedDataset(tmp_path / "c"))
    assert sc.spec is not None and sc.spec["kind"] == "bytes" and sc.spec["max_len"] == 64
    assert sc.sizes == s.sizes and sc.format == "cache"
    assert sc.lengths == (64, 64.0, 64.0, 64)  # 100..1000 bytes cut at 64
