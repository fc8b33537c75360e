"""One registry, one door: ``register_model`` records builders by name, ``create_model`` builds them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from malvision.errors import ModelError
from malvision.models._base import BYTE_KINDS, BYTES_VOCAB, KINDS, FittedModel, MalvisionModel
from malvision.models.ensemble import Ensemble

__all__ = [
    "BYTE_KINDS",
    "KINDS",
    "BYTES_VOCAB",
    "ModelInfo",
    "register_model",
    "create_model",
    "input_kwargs",
    "list_models",
    "model_info",
]

_RESERVED = ("in_kind", "n_classes", "vocab_size")

B = TypeVar("B", bound=type[nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of one model: builder class, accepted input kinds, keyword defaults,
    and whether it is fitted in one call (``FittedModel``) or trained by gradient steps."""

    name: str
    builder: type[nn.Module]
    input_kinds: tuple[str, ...]
    description: str
    defaults: dict[str, Any]
    fitted: bool
    reads_whole: bool = False  # a sequence of any length in bounded memory (``benchmark --full``)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str, input_kinds: tuple[str, ...] | None = None, description: str | None = None
) -> Callable[[B], B]:
    """Record ``builder``: a ``MalvisionModel`` (network) or ``FittedModel`` subclass taking
    ``in_kind, n_classes, vocab_size`` + kwargs.

    ``input_kinds`` defaults to the class's ``input_kinds``, ``description`` to the first line of its
    docstring. Every other keyword of the builder must have a default.
    """

    def deco(builder: B) -> B:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        if not (isinstance(builder, type) and issubclass(builder, MalvisionModel | FittedModel)):
            raise ValueError(f"model {name!r}: the builder must subclass MalvisionModel or FittedModel")
        kinds = tuple(input_kinds if input_kinds is not None else builder.input_kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"model {name!r}: input_kinds must be a non-empty subset of {KINDS}")
        params = inspect.signature(builder).parameters
        if missing := [r for r in _RESERVED if r not in params]:
            raise ValueError(f"model {name!r}: builder lacks {missing}")
        defaults: dict[str, Any] = {}
        for p in params.values():
            if p.name in _RESERVED or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.default is p.empty:
                raise ValueError(f"model {name!r}: argument {p.name!r} needs a default")
            defaults[p.name] = p.default
        doc = description or (inspect.getdoc(builder) or name).strip().splitlines()[0]
        _REGISTRY[name] = ModelInfo(
            name, builder, kinds, doc, defaults, issubclass(builder, FittedModel), builder.reads_whole
        )
        return builder

    return deco


def list_models(input_kind: str | None = None) -> list[str]:
    """Sorted names of registered models (only those taking ``input_kind`` when given)."""
    return sorted(n for n, i in _REGISTRY.items() if input_kind is None or input_kind in i.input_kinds)


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a ``ModelError`` listing valid names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ModelError(f"unknown model {name!r}; valid models: {', '.join(list_models())}") from None


def input_kwargs(name: str, spec: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs``, with ``n_features`` set for a vector model that reads an older, shorter features
    version (``ConvertSpec.n_features``), which the builder's default (today's vector) would not fit."""
    from malvision.convert.pefeatures import N_FEATURES

    out = dict(kwargs)
    if (
        "n_features" not in out
        and "n_features" in model_info(name).defaults
        and spec.n_features != N_FEATURES
    ):
        out["n_features"] = spec.n_features  # only a features or fused spec has another width
    return out


def create_model(
    name: str, *, in_kind: str, n_classes: int, vocab_size: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build model ``name`` for ``in_kind`` input with ``n_classes`` logits (the only way in).

    ``vocab_size`` is required for "opcodes", fixed at 257 for "bytes" and ignored for "image".
    ``members=K`` (a network's recipe) builds K of them as one ``Ensemble``, the mean of their logits.
    The returned module carries ``model_config`` (name, in_kind, n_classes, vocab_size, kwargs).
    """
    info = model_info(name)
    if in_kind not in info.input_kinds:
        takers = ", ".join(list_models(in_kind)) if in_kind in KINDS else f"none (kinds: {', '.join(KINDS)})"
        raise ModelError(
            f"model {name!r} does not take {in_kind!r} input (it takes {', '.join(info.input_kinds)}); "
            f"models for {in_kind!r}: {takers}"
        )
    members = kwargs.pop("members", 1)
    if unknown := sorted(set(kwargs) - set(info.defaults)):
        raise ModelError(
            f"model {name!r} has no argument {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(info.defaults) or 'none'}"
        )
    _check_members(info, members)
    try:
        built = [
            info.builder(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size, **kwargs)
            for _ in range(members)
        ]
        model = built[0] if members == 1 else Ensemble(built)
    except ModelError:
        raise
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"model {name!r}: bad arguments {kwargs}: {msg}") from None
    model.model_config = {  # type: ignore[assignment]
        "name": name,
        "in_kind": in_kind,
        "n_classes": n_classes,
        "vocab_size": getattr(model, "vocab_size", vocab_size),
        "kwargs": dict(kwargs) | ({"members": members} if members != 1 else {}),
    }
    return model


def _check_members(info: ModelInfo, members: object) -> None:
    """``members``: how many networks of ``info``'s recipe one model averages (``models.ensemble``)."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ModelError(
            f"model {info.name!r}: members must be a whole number of at least 1, got {members!r}"
        )
    if members > 1 and info.fitted:
        raise ModelError(
            f"model {info.name!r} is fitted in one call and takes no members; lgbm averages boosters with bags"
        )
