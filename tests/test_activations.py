"""ACTNET activations (our parametric forms): forward = formula, gradients, shape properties."""
from __future__ import annotations

import math

import pytest
import torch

from engine.descriptors.activations import (ExpActivation, FractionalPower, SinHActivation, WeibullActivation,
                                exp_activation, make_activation, power_normalise, sinh_activation,
                                stream_scale, weibull_activation, weibull_peak)

XS = [0.0, 0.1, 0.5, 1.0, 2.0, 3.5]


def test_sinh_forward_matches_formula():
    act = SinHActivation(alpha=1.3, beta=0.7)
    x = torch.tensor(XS)
    expected = torch.tensor([0.7 * math.sinh(1.3 * v) for v in XS])
    assert torch.allclose(act(x), expected, rtol=1e-6, atol=1e-7)


def test_exp_forward_matches_formula():
    act = ExpActivation(alpha=0.9, beta=2.0)
    x = torch.tensor(XS)
    expected = torch.tensor([2.0 * (math.exp(0.9 * v) - 1.0) for v in XS])
    assert torch.allclose(act(x), expected, rtol=1e-6, atol=1e-6)


def test_weibull_forward_matches_formula():
    act = WeibullActivation(beta=1.5, lam=0.8, a=2.5, b=1.2)
    xs = [v for v in XS if v > 0]
    expected = torch.tensor([1.5 * (v / 0.8) ** 2.5 * math.exp(-((v / 0.8) ** 1.2)) for v in xs])
    assert torch.allclose(act(torch.tensor(xs)), expected, rtol=1e-5)
    assert float(act(torch.tensor([0.0])).detach()) < 1e-10  # f(0) = 0 up to the log guard


def test_power_normalisation_matches_formula():
    pn = FractionalPower(rho=0.4, gamma=1.7)
    y = torch.tensor([0.0, 0.25, 4.0])
    assert torch.allclose(pn(y), 1.7 * (y + 1e-6) ** 0.4, rtol=1e-6)


@pytest.mark.parametrize("fn,params", [
    (sinh_activation, (1.2, 0.8)),
    (exp_activation, (0.7, 1.1)),
    (weibull_activation, (1.3, 0.9, 2.2, 1.4)),
    (power_normalise, (0.5, 1.2)),
])
def test_gradients_wrt_input_and_parameters_pass_gradcheck(fn, params):
    x = torch.tensor([0.05, 0.3, 0.9, 1.7, 2.6], dtype=torch.float64, requires_grad=True)
    ps = tuple(torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params)
    assert torch.autograd.gradcheck(lambda xx, *pp: fn(xx, *pp), (x, *ps), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", ["sinh", "exp", "weibull"])
def test_module_parameters_receive_gradients(kind):
    act = make_activation(kind).double()
    out = act(torch.linspace(0.1, 3.0, 20, dtype=torch.float64)).sum()
    out.backward()
    grads = [p.grad for p in act.parameters()]
    assert grads and all(g is not None and torch.isfinite(g) and g != 0 for g in grads)


@pytest.mark.parametrize("kind", ["sinh", "exp", "weibull"])
def test_outputs_are_non_negative_for_non_negative_inputs(kind):
    x = torch.linspace(0, 20, 401)
    assert (make_activation(kind)(x) >= 0).all()


@pytest.mark.parametrize("kind", ["sinh", "exp"])
def test_sinh_and_exp_are_monotone_and_amplify_strong_values(kind):
    act = make_activation(kind)
    x = torch.linspace(0, 5, 201)
    y = act(x)
    assert (y[1:] > y[:-1]).all()
    # super-linear: the ratio f(x)/x grows with x, so strong activations gain weight
    ratio = y[1:] / x[1:]
    assert (ratio[1:] >= ratio[:-1] - 1e-6).all()


def test_exp_is_steeper_than_sinh_at_initial_values():
    x = torch.tensor([3.0])
    assert float(make_activation("exp")(x).detach()) > float(make_activation("sinh")(x).detach())


def test_weibull_rises_then_decays_with_peak_where_formula_says():
    act = WeibullActivation(beta=1.0, lam=1.0, a=2.0, b=1.0)
    peak = act.peak()
    assert peak == pytest.approx(weibull_peak(1.0, 2.0, 1.0)) == pytest.approx(2.0)
    x = torch.linspace(0.01, 12, 1200)
    y = act(x)
    i = int(torch.argmax(y))
    assert float(x[i]) == pytest.approx(peak, abs=0.02)
    assert (y[1:i] > y[:i - 1]).all() and (y[i + 1:] < y[i:-1]).all()
    # strong activations are equalised: far beyond the peak they weigh less than at the peak
    assert float(act(torch.tensor([8.0])).detach()) < 0.25 * float(y[i].detach())


def test_parameters_are_clamped_positive():
    act = SinHActivation(alpha=-1.0, beta=1.0)
    assert (act(torch.tensor([0.0, 1.0, 2.0])) >= 0).all()


def test_stream_scale_is_mean_channel_max_and_detached():
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    with torch.no_grad():
        x[0, 0, 1, 1], x[0, 1, 2, 2], x[0, 2, 0, 0] = 3.0, 6.0, 0.0
        x[1] += 1.0
    s = stream_scale(x)
    assert s.shape == (2, 1, 1, 1)
    assert float(s[0]) == pytest.approx(3.0, rel=1e-5) and float(s[1]) == pytest.approx(1.0, rel=1e-5)
    assert not s.requires_grad
