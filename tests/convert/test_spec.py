"""Conversion settings stored with caches and checkpoints (malvision.convert.spec)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from malvision.convert.spec import SPEC_VERSION, ConvertSpec, input_name
from malvision.errors import ConversionError


@pytest.mark.parametrize(
    "spec",
    [
        ConvertSpec(),
        ConvertSpec(kind="image", image_size=224),
        ConvertSpec(kind="bytes", max_len=4096),
        ConvertSpec(kind="opcodes", max_len=100, vocab=("mov", "push")),
        ConvertSpec(kind="image", image_size=64, tile=8),
    ],
)
def test_spec_round_trips_through_a_json_dict(spec: ConvertSpec) -> None:
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["version"] == SPEC_VERSION
    assert ConvertSpec.from_dict(d) == spec


def test_spec_defaults_and_vocab_as_tuple() -> None:
    spec = ConvertSpec(kind="opcodes", vocab=["mov", "push"])  # type: ignore[arg-type]
    assert spec.vocab == ("mov", "push")
    assert spec.to_dict()["vocab"] == ["mov", "push"]
    assert hash(spec) == hash(ConvertSpec(kind="opcodes", vocab=("mov", "push")))
    assert ConvertSpec().kind == "image" and ConvertSpec().image_size == 64


def test_spec_takes_numpy_integers_as_plain_ints() -> None:
    spec = ConvertSpec(image_size=np.int64(224), max_len=np.uint32(4096))  # type: ignore[arg-type]
    assert type(spec.image_size) is int and type(spec.max_len) is int
    assert spec == ConvertSpec(image_size=224, max_len=4096)
    json.dumps(spec.to_dict())


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ConvertSpec().image_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("d", "match"),
    [
        ({"kind": "audio"}, "unknown input kind 'audio'"),
        ({"version": SPEC_VERSION + 1}, "not supported"),
        ({"version": 0}, "not supported"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": "64"}, "image_size"),
        ({"image_size": 64.5}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"max_len": -1}, "max_len"),
        ({"vocab": "mov"}, "vocab"),
        ({"vocab": [1, 2]}, "vocab"),
        ({"tile": -1}, "tile must be a whole number"),
        ({"tile": 2.0}, "tile must be a whole number"),
        ({"tile": 12}, "must divide its side"),
        ({"kind": "bytes", "tile": 8}, "tiles make the picture of an image or views input"),
    ],
)
def test_bad_spec_is_a_conversion_error(d: dict[str, Any], match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        ConvertSpec.from_dict(d)


def test_an_untiled_spec_is_stored_as_before_tiles_existed() -> None:
    assert "tile" not in ConvertSpec().to_dict()  # older caches and checkpoints read the same
    assert ConvertSpec(tile=8).to_dict()["tile"] == 8
    assert ConvertSpec.from_dict(ConvertSpec().to_dict()) == ConvertSpec(tile=0)


def test_from_dict_ignores_keys_it_does_not_know() -> None:
    assert ConvertSpec.from_dict({"kind": "bytes", "note": "x"}) == ConvertSpec(kind="bytes")


@pytest.mark.parametrize("d", ["x", ["kind", "image"], None, 3])
def test_from_dict_refuses_what_is_no_mapping(d: Any) -> None:
    with pytest.raises(ConversionError, match="a conversion spec is a mapping of its fields, got"):
        ConvertSpec.from_dict(d)


def test_input_name_tells_apart_what_a_model_and_a_cache_must_agree_on() -> None:
    names = {
        input_name(ConvertSpec(**kw).to_dict())  # type: ignore[arg-type]
        for kw in (
            {},
            {"image_size": 32},
            {"tile": 8},
            {"tile": 4},
            {"kind": "views", "tile": 8},
            {"kind": "bytes"},
        )
    }
    assert len(names) == 6 and "image of size 64 in 8x8 tiles" in names and "bytes" in names
    assert input_name(ConvertSpec(kind="features").to_dict()) == input_name(
        {"kind": "features", "version": 3}
    )
