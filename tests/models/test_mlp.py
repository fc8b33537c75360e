"""The features MLP: standardised inputs stay bounded for values training never saw."""

from __future__ import annotations

import torch

from malvision.models import create_model
from malvision.models.mlp import CLIP


def test_a_feature_that_never_varied_in_training_cannot_saturate_the_score() -> None:
    torch.manual_seed(0)
    model = create_model("mlp", in_kind="features", n_classes=2, n_features=6, hidden=(8,))
    x = torch.randn(64, 6)
    x[:, 4] = 0.0  # e.g. an import no training file has
    model.train()
    for _ in range(50):  # settle the running statistics
        model(x)
    model.eval()
    unseen = x[:3].clone()
    unseen[:, 4] = 1.0
    z = model.body[0](unseen)
    assert z[:, 4].abs().max() == CLIP  # 1 / sqrt(eps) ~ 316 deviations without the clip
    assert z.abs().max() <= CLIP
    # weights of an MLP saved before the clip still load: it adds no parameter or buffer
    keys = set(model.state_dict())
    assert {"body.0.running_mean", "body.0.running_var", "body.1.weight"} <= keys


def test_a_training_batch_of_one_row_uses_the_running_statistics() -> None:
    """The last batch of an epoch can hold one row: batch statistics of one row do not exist."""
    import torch

    from malvision.models import create_model

    model = create_model("mlp", in_kind="features", n_classes=2, n_features=5, hidden=[4]).train()
    out = model(torch.randn(1, 5))
    assert out.shape == (1, 2) and torch.isfinite(out).all()
