"""The registry: one door in, clear one-line errors for unknown names, kinds and arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from malvision.errors import ModelError
from malvision.models import MalvisionModel, create_model, list_models, model_info, register_model
from malvision.models._registry import _REGISTRY


def test_list_models_and_filter() -> None:
    names = list_models()
    assert names == sorted(names)
    assert "malconv" in names and "malconv" not in list_models("image")
    assert set(list_models("bytes")) == set(names) - {"fused", "gbt", "lgbm", "linear", "mlp"}
    assert list_models("fused") == ["fused"]
    assert list_models("features") == ["gbt", "lgbm", "linear", "mlp"]


def test_model_info_records_defaults_and_description() -> None:
    info = model_info("lstm")
    assert info.input_kinds == ("image", "bytes", "opcodes")
    assert info.defaults["pool"] == "max" and info.defaults["hidden"] == 128
    assert "LSTM" in info.description
    assert model_info("malconv").defaults["window"] == 512


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'vgg'.*cnn.*malconv"):
        create_model("vgg", in_kind="image", n_classes=2)
    with pytest.raises(ModelError, match="unknown model"):
        model_info("vgg")


def test_unsupported_kind_lists_models_for_it() -> None:
    with pytest.raises(ModelError, match=r"does not take 'image'.*models for 'image': cnn"):
        create_model("malconv", in_kind="image", n_classes=2)
    with pytest.raises(ModelError, match="kinds: image, bytes, opcodes"):
        create_model("cnn", in_kind="pixels", n_classes=2)


def test_unknown_kwarg_lists_valid_ones() -> None:
    with pytest.raises(ModelError, match=r"no argument 'hiden'.*valid: .*hidden"):
        create_model("gru", in_kind="bytes", n_classes=2, hiden=3)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("rnn", {"pool": "first"}, "pool must be one of last, max, mean"),
        ("lstm", {"hidden": 0}, "hidden must be a positive integer"),
        ("cnn", {"channels": []}, "channels must be a non-empty list"),
        ("cnn", {"global_pool": "sum"}, "global_pool"),
        ("resnet", {"channels": (4, 8), "depths": (1,)}, "differ in length"),
        ("crnn", {"rnn": "transformer"}, "rnn must be one of gru, lstm"),
        ("malconv", {"window": -1}, "window must be a positive integer"),
        ("cnn", {"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_values_are_model_errors(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        create_model(name, in_kind="bytes", n_classes=2, **kwargs)


def test_vocab_rules() -> None:
    with pytest.raises(ModelError, match="needs vocab_size"):
        create_model("lstm", in_kind="opcodes", n_classes=2)
    with pytest.raises(ModelError, match="vocab_size 257"):
        create_model("lstm", in_kind="bytes", n_classes=2, vocab_size=100)
    assert create_model("lstm", in_kind="bytes", n_classes=2).vocab_size == 257
    assert create_model("cnn", in_kind="image", n_classes=2, vocab_size=50).vocab_size is None
    with pytest.raises(ModelError, match="n_classes"):
        create_model("cnn", in_kind="image", n_classes=0)


def test_model_config_travels_with_the_model() -> None:
    m = create_model("gru", in_kind="opcodes", n_classes=4, vocab_size=30, hidden=16)
    assert m.model_config == {
        "name": "gru",
        "in_kind": "opcodes",
        "n_classes": 4,
        "vocab_size": 30,
        "kwargs": {"hidden": 16},
    }


def test_register_a_new_model() -> None:
    @register_model("_test_linear", input_kinds=("image",))
    class Tiny(MalvisionModel):
        """A throwaway linear model."""

        def __init__(self, *, in_kind: str, n_classes: int, vocab_size: int | None = None, width: int = 4):
            super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
            self._init_head(width * width, 0.0)

        def features_embedded(self, e: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            return e.flatten(1)

    try:
        assert "_test_linear" in list_models("image")
        assert model_info("_test_linear").description == "A throwaway linear model."
        m = create_model("_test_linear", in_kind="image", n_classes=3, width=2)
        assert m(torch.rand(5, 1, 2, 2)).shape == (5, 3)
        assert not model_info("_test_linear").fitted
        with pytest.raises(ValueError, match="registered twice"):
            register_model("_test_linear", input_kinds=("image",))(Tiny)
    finally:
        _REGISTRY.pop("_test_linear", None)


def test_builder_without_defaults_is_refused() -> None:
    class Bad(MalvisionModel):
        def __init__(self, *, in_kind: str, n_classes: int, vocab_size: int | None, width: int) -> None:
            super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)

    with pytest.raises(ValueError, match="needs a default"):
        register_model("_test_bad", input_kinds=("image",))(Bad)
    assert "_test_bad" not in list_models()


def test_a_builder_outside_both_protocols_is_refused() -> None:
    """A plain module would reach training and explain with neither surface: refused at registration."""

    def builder(*, in_kind: str, n_classes: int, vocab_size: int | None = None) -> nn.Module:
        return nn.Identity()

    for wrong in (builder, nn.Identity):
        with pytest.raises(ValueError, match="must subclass MalvisionModel or FittedModel"):
            register_model("_test_bad", input_kinds=("image",))(wrong)
    assert "_test_bad" not in list_models()
