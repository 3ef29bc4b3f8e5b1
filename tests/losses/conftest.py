"""Checks every loss module's tests share."""

from collections.abc import Callable

import pytest
import torch


@pytest.fixture(scope="session")
def check_defaults_and_citation() -> Callable[..., None]:
    """``check(loss_class, defaults, *keys)``: the default module holds ``defaults`` and cites every key."""

    def check(loss_class: type[torch.nn.Module], defaults: dict[str, object], *citation_keys: str) -> None:
        loss = loss_class()
        assert {name: getattr(loss, name) for name in defaults} == defaults
        for key in citation_keys:
            assert key in loss.citation

    return check


@pytest.fixture(scope="session")
def check_bad_hyperparameter() -> Callable[..., None]:
    """``check(loss_class, function, name, module_value, function_value)``: both reject the value, naming it.

    ``function`` is a pure loss of ``(student_scores, teacher_scores, mask)``; the module's message names the
    config key ``loss.<name>``.
    """

    def check(
        loss_class: type[torch.nn.Module],
        function: Callable[..., torch.Tensor],
        name: str,
        module_value: float,
        function_value: float,
    ) -> None:
        with pytest.raises(ValueError, match=rf"loss\.{name}"):
            loss_class(**{name: module_value})
        with pytest.raises(ValueError, match=name):
            function(torch.zeros(1, 2), torch.zeros(1, 2), None, **{name: function_value})

    return check
