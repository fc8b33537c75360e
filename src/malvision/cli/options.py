"""Options several commands share, and what turns them into library objects (sizes, model keywords,
training settings, datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from malvision.cli.app import progress

__all__ = ["MaxSize", "ModelKw", "DataOpt", "KindOpt", "parse_kwargs", "train_config", "dataset_for"]


MaxSize = Annotated[str, typer.Option("--max-size", help="Refuse inputs larger than this (e.g. 8G, 500M).")]


def parse_kwargs(items: list[str] | None) -> dict[str, Any]:
    """['hidden=64', 'pool="last"', 'bidirectional=true'] -> a dict (values read as JSON when they parse)."""
    import json

    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set takes key=value, got {item!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def train_config(
    model: str,
    sets: list[str] | None,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    max_len: int | None,
    seed: int,
    threads: int | None,
    **extra: Any,
) -> Any:
    """The ``TrainConfig`` of the training options every experiment command takes (None: the default)."""
    from malvision.train import TrainConfig

    kw = dict(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, max_len=max_len, seed=seed)
    kw |= dict(threads=threads, **extra)
    return TrainConfig(
        model=model, model_kwargs=parse_kwargs(sets), **{k: v for k, v in kw.items() if v is not None}
    )


def dataset_for(data: Path, kind: str | None, image_size: int, max_len: int | None) -> Any:
    from malvision.convert.spec import ConvertSpec
    from malvision.evaluate.runner import open_cache

    spec = None
    if kind is not None:
        spec = ConvertSpec(kind=kind, image_size=image_size, **({"max_len": max_len} if max_len else {}))  # type: ignore[arg-type]
    with progress() as bar:
        return open_cache(data, spec, progress=bar, image_size=image_size)


ModelKw = Annotated[list[str] | None, typer.Option("--set", help="Model keyword, key=value (repeatable).")]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Cache folder or any dataset malvision reads.")]
KindOpt = Annotated[
    str | None, typer.Option(help="Input kind when DATA is not a cache: image, bytes, opcodes.")
]
