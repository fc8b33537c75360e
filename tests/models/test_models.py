"""Every registered network x every input kind it takes: shape, finiteness, gradients, determinism, I/O.

Fitted models (trees, linear) follow the other protocol and have their own loop in test_fitted.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from malvision.checkpoint import load_checkpoint, save_checkpoint
from malvision.models import MalvisionModel, list_models, model_info

TRAINED = [n for n in list_models() if not model_info(n).fitted]
CASES = [(name, kind) for name in TRAINED for kind in model_info(name).input_kinds]
SEQ_CASES = [(n, k) for n, k in CASES if k in ("bytes", "opcodes")]
N_CLASSES = 3


def test_every_model_is_covered() -> None:
    names = {n for n, _ in CASES}
    assert {"cnn", "resnet", "rnn", "lstm", "gru", "crnn", "malconv", "mlp", "fused"} <= names


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_shape_finite_and_surface(name: str, kind: str, build, make_input) -> None:
    model = build(name, kind).eval()
    assert isinstance(model, MalvisionModel)
    assert kind in model.input_kinds
    x = make_input(kind)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        via_seam = model.forward_embedded(model.embed(x), model.padding_mask(x))
    assert logits.shape == (x.shape[0], N_CLASSES)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert feats.shape == (x.shape[0], model.num_features)
    torch.testing.assert_close(model.forward_head(feats), logits)
    torch.testing.assert_close(via_seam, logits)
    # logits, not probabilities: rows do not sum to one and values leave [0, 1]
    assert not torch.allclose(logits.softmax(-1).sum(-1), logits.sum(-1))


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_gradients_reach_every_parameter(name: str, kind: str, build, make_input) -> None:
    model = build(name, kind).train()
    x = make_input(kind, batch=6)
    y = torch.arange(x.shape[0]) % N_CLASSES
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}/{kind}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}/{kind}: non-finite gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}/{kind}: zero gradient for {pname}"


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_embedding_gradient_seam(name: str, kind: str, build, make_input) -> None:
    """Gradients start at the embedding (sequences) or the pixels (images)."""
    model = build(name, kind).eval()
    x = make_input(kind)
    e = model.embed(x).detach().requires_grad_(True)
    model.forward_embedded(e, model.padding_mask(x))[:, 0].sum().backward()
    assert e.grad is not None and e.grad.shape == e.shape
    assert e.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_eval_is_deterministic(name: str, kind: str, build, make_input) -> None:
    model = build(name, kind).eval()
    x = make_input(kind)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    again = build(name, kind).eval()  # same seed, same weights
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_checkpoint_round_trip(name: str, kind: str, build, make_input, tiny_kwargs, tmp_path: Path) -> None:
    model = build(name, kind)
    x = make_input(kind)
    with torch.no_grad():  # move BatchNorm running statistics off their defaults
        model.train()(make_input(kind, seed=1))
    model.eval()
    with torch.no_grad():
        expected = model(x)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        model_name=name,
        model_kwargs=tiny_kwargs(name),
        in_kind=kind,
        n_classes=N_CLASSES,
        vocab_size=model.vocab_size,
        spec={"kind": kind},
        classes=["a", "b", "c"],
        seed=7,
        manifest_hash=None,
    )
    ckpt = load_checkpoint(path)
    assert not ckpt.model.training
    assert ckpt.model_name == name and ckpt.in_kind == kind
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), expected)


@pytest.mark.parametrize(("name", "kind"), SEQ_CASES)
def test_padding_does_not_change_outputs(name: str, kind: str, build, make_input) -> None:
    """A sample gives the same logits alone, with extra padding, and inside a padded batch."""
    model = build(name, kind).eval()
    x = make_input(kind, batch=4)
    with torch.no_grad():
        batch = model(x)
        padded = model(F.pad(x, (0, 29)))
        for i in range(x.shape[0]):
            n = int((x[i] != 0).sum())
            alone = model(x[i : i + 1, :n])
            torch.testing.assert_close(alone[0], batch[i], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded, batch, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "kind"), SEQ_CASES)
def test_very_short_sequences(name: str, kind: str, build) -> None:
    model = build(name, kind).eval()
    x = torch.tensor([[5], [0]])  # one token; an all-padding row must not give NaN
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, N_CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models("image"))
@pytest.mark.parametrize("size", [8, 33, 64])
def test_image_sizes(name: str, size: int, build) -> None:
    model = build(name, "image").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, size, size))
    assert out.shape == (2, N_CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_wrong_input_is_a_model_error(name: str, kind: str, build) -> None:
    from malvision.errors import ModelError

    model = build(name, kind)
    wrong = (
        torch.randint(0, 5, (2, 16))
        if kind in ("image", "features", "fused", "histograms")
        else torch.rand(2, 1, 8, 8)
    )
    with pytest.raises(ModelError, match="expects"):
        model(wrong)
    if kind in ("features", "histograms"):
        with pytest.raises(ModelError, match="expects 12 features"):
            model(torch.rand(2, 13))
    if kind == "fused":
        with pytest.raises(
            ModelError, match=r"expects a float \(B, 268\) tensor \(12 features, then a 16x16"
        ):
            model(torch.rand(2, 13))
    if kind in ("bytes", "opcodes"):
        with pytest.raises(ModelError, match=r"ids must be in \[0, \d+\)"):
            model(torch.full((1, 40), 999))


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_reset_classifier(name: str, kind: str, build, make_input) -> None:
    model = build(name, kind).eval()
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(make_input(kind)).shape == (4, 5)
    assert model.model_config["n_classes"] == 5


@pytest.mark.parametrize("name", ["cnn", "resnet", "crnn"])
def test_cam_layer_gives_a_feature_map(name: str, build, make_input) -> None:
    model = build(name, "image").eval()
    seen = []
    handle = model.cam_layer().register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(make_input("image"))
    handle.remove()
    assert seen and seen[-1].dim() == 4


@pytest.mark.parametrize("kind", ["image", "views"])
def test_cnn_image_stride_shrinks_the_plot_at_once(kind: str, build, make_input) -> None:
    plain, strided = build("cnn", kind).eval(), build("cnn", kind, image_stride=4).eval()
    x = make_input(kind, batch=2)
    with torch.no_grad():
        assert plain._feature_map(x, None)[0].shape[-1] == 4 * strided._feature_map(x, None)[0].shape[-1]
        out = strided(x)
    assert out.shape == (2, N_CLASSES) and torch.isfinite(out).all()
    # image_stride=1 adds no stem: the default keeps its old parameters, so older checkpoints load
    assert set(build("cnn", kind, image_stride=1).state_dict()) == set(plain.state_dict())
    assert any(k.startswith("image_stem.") for k in strided.state_dict())
