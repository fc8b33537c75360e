"""``linear``: L2-regularised logistic regression over the PE structure vector (``convert.pefeatures``).

scikit-learn fits it (``LogisticRegression`` on standardised rows); this module keeps the scaler and
the coefficients as buffers and scores in ``forward``, so it saves, loads and exports to ONNX like
every other model. Standardised values are clipped to +-CLIP, as in the MLP: a feature that never
varied in training would otherwise come out hundreds of deviations off.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from malvision.convert.pefeatures import N_FEATURES
from malvision.errors import ModelError
from malvision.models._base import FittedModel, Groups, OnStep, Rows, check_positive
from malvision.models._registry import register_model

__all__ = ["Linear", "CLIP"]

CLIP = 5.0


@register_model("linear")
class Linear(FittedModel):
    """Logistic regression on the standardised PE structure vector (scikit-learn fits, torch scores)."""

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        n_features: int = N_FEATURES,
        c: float = 1.0,
        max_iter: int = 2000,
    ) -> None:
        check_positive("linear", n_features=n_features, max_iter=max_iter)
        if n_classes < 2:
            raise ModelError(f"linear scores two or more classes, got {n_classes}")
        if not c > 0:
            raise ModelError(f"linear: c must be positive, got {c}")
        super().__init__(in_kind=in_kind, n_classes=n_classes, n_features=n_features)
        self.c, self.max_iter = float(c), max_iter
        rows = 1 if n_classes == 2 else n_classes
        self.register_buffer("scale", torch.ones(n_features))
        self.register_buffer("coef", torch.zeros(rows, n_features))
        self.register_buffer("intercept", torch.zeros(rows))

    def _standardise(self, x: Tensor) -> Tensor:
        return ((x - self.feature_mean) / self.scale).clamp(-CLIP, CLIP)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        z = self._standardise(x.float()) @ self.coef.T + self.intercept
        return torch.cat([torch.zeros_like(z), z], dim=1) if self.n_classes == 2 else z

    def fit(
        self,
        x: Rows,
        y: Rows,
        sample_weight: Rows | None,
        seed: int,
        on_step: OnStep = None,
        groups: Groups = None,
    ) -> None:
        """Fit on float32 rows ``x`` and class ids ``y``; ``on_step`` hears once, when it is done."""
        from sklearn.linear_model import LogisticRegression

        x = self._check_rows(x, y)
        std = x.std(0)
        with torch.no_grad():
            self.scale.copy_(torch.from_numpy(np.where(std > 0, std, 1.0).astype(np.float32)))
            rows = self._standardise(torch.from_numpy(x)).double().numpy()
        clf = LogisticRegression(C=self.c, max_iter=self.max_iter, random_state=seed)
        clf.fit(rows, y, sample_weight=sample_weight)
        with torch.no_grad():
            self.coef.copy_(torch.from_numpy(clf.coef_.astype(np.float32)))
            self.intercept.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))
        if on_step is not None:
            on_step(1, 1)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, c={self.c}"
