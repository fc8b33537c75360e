"""Datasets: readers for the formats users have, the fast training cache, and seeded splits."""

from __future__ import annotations

from malvision.data.big2015 import Big2015Dataset, OpcodeTreeDataset
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import build_cache_from_paths, write_cache
from malvision.data.detect import FORMATS, detect_format, open_dataset
from malvision.data.readers import (
    BinaryTreeDataset,
    CsvDataset,
    FileListDataset,
    MalimgDataset,
)
from malvision.data.records import ConcatDataset, RawDataset, Record
from malvision.data.splits import (
    group_holdout,
    group_kfold,
    stratified_holdout,
    stratified_kfold,
    train_val_split,
)
from malvision.data.zips import ZipDataset

__all__ = [
    "FORMATS",
    "Record",
    "RawDataset",
    "ConcatDataset",
    "MalimgDataset",
    "BinaryTreeDataset",
    "CsvDataset",
    "Big2015Dataset",
    "OpcodeTreeDataset",
    "FileListDataset",
    "ZipDataset",
    "CachedDataset",
    "open_dataset",
    "detect_format",
    "write_cache",
    "build_cache_from_paths",
    "stratified_kfold",
    "stratified_holdout",
    "group_kfold",
    "group_holdout",
    "train_val_split",
]
