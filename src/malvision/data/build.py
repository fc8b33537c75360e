"""Training caches from the project's real data: PE malware vs benign, and BIG2015 opcode families.

Inputs are local only (nothing downloads): the benign corpora (``tools/build_benign_corpus.sh``,
``scripts/build_extra_benign.sh``), theZoo's PE sample zip (``../shared/data/thezoo_pe_malware.zip``),
malware corpora rebuilt from public collections (``tools/build_malware_corpus.py``: ``<group>/<sha256>``
+ ``manifest.csv``) and the unpacked BIG2015 opcode sequences (``~/.cache/malvision/big2015_opcodes``).
Every malware sample keeps its collection (the zip, or the repository it came from) for
source-disjoint evaluation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from malvision.convert.sequence import DEFAULT_MAX_LEN
from malvision.convert.spec import ConvertSpec
from malvision.data.big2015 import OpcodeTreeDataset
from malvision.data.cache_write import write_cache
from malvision.data.readers import CsvDataset
from malvision.data.records import ConcatDataset
from malvision.data.zips import DEFAULT_PASSWORD, MAX_ENTRY_SIZE, ZipDataset
from malvision.errors import DatasetError
from malvision.io import DEFAULT_MAX_SIZE

__all__ = [
    "cache_home",
    "shared_dir",
    "default_benign_dir",
    "default_malware_zip",
    "default_opcodes_dir",
    "benign_corpus",
    "benign_corpora",
    "malware_corpus",
    "detection_dataset",
    "build_detection_cache",
    "build_opcode_cache",
]

MALWARE_ZIP = "data/thezoo_pe_malware.zip"


def _get_malware(out: Path) -> str:
    """The command that builds the malware corpus at ``out``."""
    return (
        "python3 ../shared/tools/build_malware_corpus.py --sources DIR --manifest "
        f"../shared/data/malware_v2_manifest.csv --out {out}"
    )


def _get_benign(out: Path) -> str:
    """The command that builds the benign corpus at ``out``."""
    return f"OUT={out} bash ../shared/tools/build_benign_corpus.sh"


def cache_home() -> Path:
    """``$MALVISION_CACHE`` or ``~/.cache/malvision``: where unpacked data and caches live."""
    return Path(os.environ.get("MALVISION_CACHE") or Path.home() / ".cache" / "malvision")


def shared_dir() -> Path | None:
    """The project's read-only ``../shared`` folder (beside the repo or the working folder), if any."""
    repo = Path(__file__).resolve().parents[3]
    for cand in (Path.cwd() / ".." / "shared", repo / ".." / "shared"):
        if cand.is_dir():
            return cand.resolve()
    return None


def default_malware_zip() -> Path:
    """``../shared/data/thezoo_pe_malware.zip``; a ``DatasetError`` saying where to get it."""
    shared = shared_dir()
    if shared is None or not (shared / MALWARE_ZIP).is_file():
        raise DatasetError(
            f"no malware zip found at ../shared/{MALWARE_ZIP}; pass --malware-zip ZIP "
            "(a sample zip, password 'infected', entries <family>/<sha256>)"
        )
    return shared / MALWARE_ZIP


def default_benign_dir() -> Path:
    """``<cache home>/benign``; a ``DatasetError`` saying how to build it."""
    d = cache_home() / "benign"
    if not (d / "pe").is_dir():
        raise DatasetError(f"no benign corpus at {d}; build it with `{_get_benign(d)}` or pass --benign DIR")
    return d


def default_opcodes_dir() -> Path:
    """``<cache home>/big2015_opcodes``; a ``DatasetError`` saying how to unpack it."""
    d = cache_home() / "big2015_opcodes"
    if not d.is_dir():
        raise DatasetError(
            f"no BIG2015 opcodes at {d}; unpack them with "
            f"`tar -xJf ../shared/data/big2015_opcodes.tar.xz -C {d.parent}/` or pass --opcodes DIR"
        )
    return d


def benign_corpus(root: Path | str, max_size: int = DEFAULT_MAX_SIZE) -> CsvDataset:
    """The benign corpus ``root/pe/<sha256>`` + ``manifest_ext.csv``: label benign, group = source package."""
    root = Path(root)
    manifest = next((root / m for m in ("manifest_ext.csv", "manifest.csv") if (root / m).is_file()), None)
    if manifest is None or not (root / "pe").is_dir():
        raise DatasetError(
            f"{root}: not a benign corpus (expected pe/ and manifest_ext.csv); build it with `{_get_benign(root)}`"
        )
    ds = CsvDataset(
        manifest, root=root / "pe", label="benign", group_column="source_package", max_size=max_size
    )
    # Group by project, not by release: numpy 2.2.6 and 2.4.6 must not sit on both sides of a split.
    ds.records = [replace(r, group=source_project(r.group)) if r.group else r for r in ds.records]
    return ds


def source_project(source_package: str) -> str:
    """'pypi:numpy==2.4.6' -> 'pypi:numpy'; 'deb:libwine=8.0~repack-4' -> 'deb:libwine';
    'npm:@esbuild/win32-x64@0.28.2' -> 'npm:@esbuild/win32-x64'."""
    kind, sep, rest = source_package.partition(":")
    if not sep:
        return source_package
    if kind == "npm":
        name = rest.rsplit("@", 1)[0] if rest.count("@") > (1 if rest.startswith("@") else 0) else rest
    else:
        name = re.split(r"==|=", rest, maxsplit=1)[0]
    return f"{kind}:{name.lower()}"


def malware_corpus(root: Path | str, max_size: int = DEFAULT_MAX_SIZE) -> CsvDataset:
    """A malware corpus ``root/<group>/<sha256>`` + ``manifest.csv`` (``tools/build_malware_corpus.py``):
    label malware, group = family or campaign, collection = the repository each file came from."""
    root = Path(root)
    if not (root / "manifest.csv").is_file():
        raise DatasetError(
            f"{root}: not a malware corpus (no manifest.csv); build it with `{_get_malware(root)}`"
        )
    return CsvDataset(
        root / "manifest.csv", root=root, label="malware", group_column="group", file_column="sha256",
        collection_column="repo", max_size=max_size,
    )  # fmt: skip


BenignDirs = Path | str | Sequence[Path | str] | None


def benign_corpora(
    benign_dir: BenignDirs = None, max_size: int = DEFAULT_MAX_SIZE, max_per_group: int | None = None
) -> list[CsvDataset]:
    """One or several benign corpora (default: ``default_benign_dir()``), each file kept once.

    A file already listed (same sha256) in an earlier corpus is left out of later ones: a benign copy
    of a benign file is expected, not a failure to report. ``max_per_group`` keeps at most that many
    files of one project, earlier corpora first, then by sha256 (a fixed, version-blind draw), so one
    project released in many builds cannot outweigh the others.
    """
    if max_per_group is not None and max_per_group < 1:
        raise DatasetError(f"--max-per-group must be at least 1, got {max_per_group}")
    if benign_dir is None or isinstance(benign_dir, (str, os.PathLike)):
        dirs: list[Path | str] = [benign_dir or default_benign_dir()]
    else:
        dirs = list(benign_dir) or [default_benign_dir()]
    parts: list[CsvDataset] = []
    seen: set[str] = set()
    taken: dict[str | None, int] = {}  # files kept so far per project, over the corpora
    for d in dirs:
        part = benign_corpus(d, max_size=max_size)
        part.records = [r for r in part.records if r.sha256 is None or r.sha256 not in seen]
        seen.update(r.sha256 for r in part.records if r.sha256 is not None)
        if max_per_group is not None:
            part.records = _capped(part.records, max_per_group, taken)
        if part.records:
            parts.append(part)
    return parts


def _capped(records: list[Any], cap: int, taken: dict[str | None, int]) -> list[Any]:
    """The records of one corpus within ``cap`` files a group (``taken`` counts earlier corpora's)."""
    keep: set[int] = set()
    by_group: dict[str | None, list[int]] = {}
    for i, r in enumerate(records):
        by_group.setdefault(r.group, []).append(i)
    for group, idx in by_group.items():
        room = cap - taken.get(group, 0)
        chosen = sorted(idx, key=lambda i: records[i].sha256 or records[i].id)[: max(room, 0)]
        taken[group] = taken.get(group, 0) + len(chosen)
        keep.update(chosen)
    return [r for i, r in enumerate(records) if i in keep]


def detection_dataset(
    benign_dir: BenignDirs = None,
    malware_zip: Path | str | None = None,
    all_kinds: bool = False,
    password: str = DEFAULT_PASSWORD,
    max_size: int = DEFAULT_MAX_SIZE,
    malware_dirs: Sequence[Path | str] = (),
    max_per_group: int | None = None,
) -> ConcatDataset:
    """Benign corpora (label benign, group = source project) + the sample zip and malware corpora
    (label malware, group = family; collection = the zip or the repository).

    ``benign_dir`` is one corpus folder or several (combined by ``benign_corpora``). Only zip entries
    whose manifest kind is ``pe`` are kept unless ``all_kinds``: the benign side is all PE, so other
    file types would teach the model "not PE" rather than "malicious". ``max_per_group`` caps the files
    of one benign project (``benign_corpora``).
    """
    benign = benign_corpora(benign_dir, max_size=max_size, max_per_group=max_per_group)
    zip_path = Path(malware_zip or default_malware_zip())
    malware = ZipDataset(
        zip_path,
        label="malware",
        password=password,
        kinds=None if all_kinds else ("pe",),
        max_entry_size=min(max_size, MAX_ENTRY_SIZE),
        collection=zip_path.stem,
    )
    more = [malware_corpus(d, max_size=max_size) for d in malware_dirs]
    return ConcatDataset([*benign, malware, *more], name="pe-malware-vs-benign")


def build_detection_cache(
    out_dir: Path | str,
    kind: str = "image",
    image_size: int = 64,
    max_len: int | None = None,
    benign_dir: BenignDirs = None,
    malware_zip: Path | str | None = None,
    all_kinds: bool = False,
    password: str = DEFAULT_PASSWORD,
    max_size: int = DEFAULT_MAX_SIZE,
    progress: Any | None = None,
    overwrite: bool = False,
    dedupe: bool = True,
    malware_dirs: Sequence[Path | str] = (),
    max_per_group: int | None = None,
    command: list[str] | None = None,
    kind_version: int | None = None,
    tile: int = 0,
) -> tuple[int, list[tuple[str, str]]]:
    """Cache the malware-vs-benign PE set as input ``kind`` (any but opcodes); returns (written, failures).
    ``kind_version``: an older conversion of ``kind`` (``ConvertSpec.version``); ``tile``: see
    ``ConvertSpec``; ``command``: see ``write_cache``."""
    if kind not in ("image", "views", "bytes", "features", "fused", "histograms"):
        raise DatasetError(
            f"--kind {kind!r}: the PE set builds as image, views, bytes, features, fused or histograms "
            "(opcodes: use --opcodes)"
        )
    spec = ConvertSpec(
        kind=kind, image_size=image_size, max_len=max_len or DEFAULT_MAX_LEN, version=kind_version, tile=tile
    )  # type: ignore[arg-type]
    with detection_dataset(
        benign_dir, malware_zip, all_kinds, password, max_size, malware_dirs, max_per_group
    ) as raw:
        return write_cache(
            raw, out_dir, spec, progress=progress, overwrite=overwrite, dedupe=dedupe, command=command
        )


def build_opcode_cache(
    out_dir: Path | str,
    opcodes_dir: Path | str | None = None,
    max_len: int | None = None,
    progress: Any | None = None,
    overwrite: bool = False,
    dedupe: bool = True,
    command: list[str] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Cache the BIG2015 opcode sequences (label = family), at most ``max_len`` opcodes each."""
    spec = ConvertSpec(kind="opcodes", max_len=max_len or DEFAULT_MAX_LEN)
    with OpcodeTreeDataset(opcodes_dir or default_opcodes_dir()) as raw:
        return write_cache(
            raw, out_dir, spec, progress=progress, overwrite=overwrite, dedupe=dedupe, command=command
        )
