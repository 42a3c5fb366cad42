"""Classification metrics and the linear-probe baseline (the ``finance`` sentiment domain;
any domain whose catalog is a set of classes).

Labels are class indices. ``classification_metrics`` gives accuracy, macro-F1 (the mean
of the classes' F1, each class counting alike however rare) and each class's F1, and
``with_intervals`` adds 95% percentile-bootstrap intervals over the cases, as
``ranking_metrics.bootstrap_interval`` does over users: the resamples are computed in one
batch. ``LogisticRegression`` is the frozen-encoder probe (multinomial, L2, fitted by
L-BFGS in torch), its L2 strength chosen on the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the probe's L2 strengths tried on validation


def f1_per_class(true: torch.Tensor, predicted: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(..., n_classes) F1 of each class over the last dimension of ``true`` and
    ``predicted`` (class indices). A class neither present nor predicted scores 0, as
    scikit-learn's ``zero_division=0`` does."""
    classes = torch.arange(n_classes, device=true.device)
    is_true = true.unsqueeze(-1) == classes
    is_predicted = predicted.unsqueeze(-1) == classes
    hits = (is_true & is_predicted).sum(-2).double()
    counted = (is_true.sum(-2) + is_predicted.sum(-2)).double()  # 2 TP + FP + FN
    return torch.where(counted > 0, 2 * hits / counted.clamp(min=1), torch.zeros_like(hits))


def classification_metrics(
    true: torch.Tensor, predicted: torch.Tensor, labels: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``accuracy``, ``macro_f1`` and ``f1_<label>`` over the last dimension (a batch of
    resamples in front is allowed): tensors of the leading shape."""
    f1 = f1_per_class(true, predicted, len(labels))
    metrics = {"accuracy": (true == predicted).double().mean(-1), "macro_f1": f1.mean(-1)}
    metrics.update({f"f1_{label}": f1[..., i] for i, label in enumerate(labels)})
    return metrics


def with_intervals(
    true: torch.Tensor,
    predicted: torch.Tensor,
    labels: Sequence[str],
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """``classification_metrics`` as numbers, each with ``<metric>_low`` and
    ``<metric>_high``: the percentile bootstrap interval over the cases."""
    if len(true) == 0:
        raise ValueError("no cases to measure")
    point = classification_metrics(true, predicted, labels)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(true), (resamples, len(true)), generator=generator)
    drawn = classification_metrics(true[rows], predicted[rows], labels)
    tail = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    result = {}
    for name, value in point.items():
        low, high = torch.quantile(drawn[name], tail).tolist()
        result.update({name: float(value), f"{name}_low": low, f"{name}_high": high})
    return result


class LogisticRegression:
    """Multinomial logistic regression on fixed features, ``l2`` times the squared weights
    (not the bias) added to the mean cross-entropy; L-BFGS to convergence (the loss is
    convex, so the fit is the same on any run)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, n_classes: int, l2: float):
        x = features.double()
        self.weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
        self.bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [self.weight, self.bias], lr=1, max_iter=200, tolerance_grad=1e-6, line_search_fn="strong_wolfe"
        )

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = torch.nn.functional.cross_entropy(self.logits(x), labels) + l2 * self.weight.pow(2).sum()
            value.backward()
            return value

        optimizer.step(loss)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.double() @ self.weight + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(-1)

    @classmethod
    def chosen_on(
        cls,
        train: tuple[torch.Tensor, torch.Tensor],
        valid: tuple[torch.Tensor, torch.Tensor],
        n_classes: int,
        grid: Sequence[float] = L2_GRID,
    ) -> tuple["LogisticRegression", float]:
        """The fit on ``train`` (features, labels) whose L2 strength from ``grid`` gives the
        best validation accuracy (the weaker one on a tie), and that strength."""
        best, best_l2, best_accuracy = None, grid[0], -1.0
        for l2 in sorted(grid, reverse=True):
            fitted = cls(*train, n_classes, l2)
            accuracy = float((fitted.predict(valid[0]) == valid[1]).double().mean())
            if accuracy >= best_accuracy:
                best, best_l2, best_accuracy = fitted, l2, accuracy
        return best, best_l2
