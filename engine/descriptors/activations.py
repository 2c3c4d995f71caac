"""Learnable activation layers of ACTNET (SinH, Exp, modified Weibull) and power normalisation.

ACTNET (``papers/actnet.txt``, Sec. 3.1, eqs. (2), (6), (10), (20)) applies a parametric
"amplifier" to every value of a conv feature map before global average pooling, so that strong
(object) activations weigh more than the many weak (background) ones. **Our copy of the paper
lost the formulas and the initial values; the forms below are OUR DESIGN**, chosen to have the
properties the paper states:

* non-negative outputs for non-negative inputs, ``f(0) = 0``; differentiable in every parameter;
* SinH and Exp: monotone increasing and super-linear (amplify strong activations; Exp steeper);
* modified Weibull: a polynomial rise times an exponential decay, so it peaks and then
  *equalises* (attenuates) the very strongest activations.

Forms (``x >= 0`` is the feature value divided by the image's stream scale, see
:func:`stream_scale`; all parameters are kept positive by clamping at ``MIN_PARAM``):

* SinH  (ours, eq. (2) analogue): ``f(x) = beta * sinh(alpha * x)``; init alpha = 1.5, beta = 1.
* Exp   (ours, eq. (6) analogue): ``f(x) = beta * (exp(alpha * x) - 1)``; init alpha = 1.5, beta = 1.
* Weibull (ours, eq. (10) analogue):
  ``f(x) = beta * (x / lam)**a * exp(-(x / lam)**b)``; init beta = 1, lam = 1, a = 2, b = 1.
  Its peak is at ``x* = lam * (a / b)**(1/b)`` (eq. (11) analogue): values below x* are
  amplified polynomially, values above decay exponentially ("equalised").
* Fractional power normalisation (ours, eq. (20) analogue): ``P(y) = gamma * (y + eps)**rho``
  per stream, init rho = 0.5, gamma = 1 (gamma also balances the streams).

As in the paper, ``alpha``/``a``/``b`` set how non-linear the re-weighting is and ``beta``
scales the stream. The initial values make the method usable untrained; training adjusts them.
Pure functions are given for testing; the ``nn.Module`` classes hold the learnable parameters.
"""
from __future__ import annotations

import torch
import torch.nn as nn

MIN_PARAM = 1e-3
EPS = 1e-6


def _pos(p: torch.Tensor | float) -> torch.Tensor | float:
    return p.clamp(min=MIN_PARAM) if isinstance(p, torch.Tensor) else max(float(p), MIN_PARAM)


def stream_scale(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per-image scale of a stream ``(B,C,H,W) -> (B,1,1,1)``: the mean over channels of each
    channel's maximum (our design: makes the activations' initial values independent of the
    backbone and of the image's contrast; detached, it is a normalisation, not a parameter)."""
    return x.amax(dim=(-2, -1)).mean(dim=1).view(-1, 1, 1, 1).detach() + eps


def sinh_activation(x: torch.Tensor, alpha, beta) -> torch.Tensor:
    """SinH activation (ACTNET eq. (2), our form): ``beta * sinh(alpha * x)``."""
    return _pos(beta) * torch.sinh(_pos(alpha) * x)


def exp_activation(x: torch.Tensor, alpha, beta) -> torch.Tensor:
    """Exp activation (ACTNET eq. (6), our form): ``beta * (exp(alpha * x) - 1)``."""
    return _pos(beta) * torch.expm1(_pos(alpha) * x)


def weibull_activation(x: torch.Tensor, beta, lam, a, b) -> torch.Tensor:
    """Modified Weibull (ACTNET eq. (10), our form): ``beta * (x/lam)^a * exp(-(x/lam)^b)``.

    Computed as ``beta * exp(a*log(u) - exp(b*log(u)))`` with ``u = max(x/lam, EPS)``, so ``f(0) ~ 0``
    and gradients stay finite at 0.
    """
    log_u = torch.log((x / _pos(lam)).clamp(min=EPS))
    return _pos(beta) * torch.exp(_pos(a) * log_u - torch.exp(_pos(b) * log_u))


def weibull_peak(lam: float, a: float, b: float) -> float:
    """Where the modified Weibull peaks (eq. (11) analogue): ``lam * (a/b)^(1/b)``."""
    return float(lam) * (float(a) / float(b)) ** (1.0 / float(b))


def power_normalise(y: torch.Tensor, rho, gamma, eps: float = EPS) -> torch.Tensor:
    """Fractional power normalisation (ACTNET eq. (20), our form): ``gamma * (y + eps)^rho``."""
    return _pos(gamma) * (y.clamp(min=0) + eps).pow(_pos(rho))


class Activation(nn.Module):
    """Base class: a learnable element-wise map of non-negative feature values."""

    kind = "identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # identity = "direct aggregation"
        return x

    def describe(self) -> dict[str, float]:
        return {n: float(p.detach()) for n, p in self.named_parameters()}


class _RateScaleActivation(Activation):
    """An activation with a learnable rate ``alpha`` and scale ``beta``."""

    def __init__(self, alpha: float = 1.5, beta: float = 1.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.beta = nn.Parameter(torch.tensor(float(beta)))


class SinHActivation(_RateScaleActivation):
    """``f(x) = beta * sinh(alpha * x)`` (our design; see module doc)."""

    kind = "sinh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sinh_activation(x, self.alpha, self.beta)


class ExpActivation(_RateScaleActivation):
    """``f(x) = beta * (exp(alpha * x) - 1)`` (our design; see module doc)."""

    kind = "exp"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return exp_activation(x, self.alpha, self.beta)


class WeibullActivation(Activation):
    """``f(x) = beta * (x/lam)^a * exp(-(x/lam)^b)`` (our design; see module doc)."""

    kind = "weibull"

    def __init__(self, beta: float = 1.0, lam: float = 1.0, a: float = 2.0, b: float = 1.0):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(beta)))
        self.lam = nn.Parameter(torch.tensor(float(lam)))
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return weibull_activation(x, self.beta, self.lam, self.a, self.b)

    def peak(self) -> float:
        return weibull_peak(_pos(float(self.lam.detach())), _pos(float(self.a.detach())), _pos(float(self.b.detach())))


class FractionalPower(nn.Module):
    """``P(y) = gamma * (y + eps)^rho`` with learnable rho, gamma (our form of eq. (20))."""

    def __init__(self, rho: float = 0.5, gamma: float = 1.0):
        super().__init__()
        self.rho = nn.Parameter(torch.tensor(float(rho)))
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return power_normalise(y, self.rho, self.gamma)


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Activation,
    "sinh": SinHActivation,
    "exp": ExpActivation,
    "weibull": WeibullActivation,
}


def make_activation(kind: str, rate: float | None = None) -> Activation:
    """A fresh activation of ``kind`` (``identity`` | ``sinh`` | ``exp`` | ``weibull``) at its initial
    values; ``rate``: SinH's / Exp's initial ``alpha`` instead of 1.5 (None: 1.5)."""
    if kind not in ACTIVATIONS:
        raise KeyError(f"unknown activation {kind!r}; known: {sorted(ACTIVATIONS)}")
    cls = ACTIVATIONS[kind]
    if rate is None:
        return cls()
    if not issubclass(cls, _RateScaleActivation):
        raise ValueError(f"an initial rate applies to the sinh and exp activations, not {kind!r}")
    return cls(alpha=float(rate))
