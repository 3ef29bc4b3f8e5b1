import pytest
import torch
from hydra.utils import instantiate

from ragdistill.config_check import check_config
from ragdistill.losses import InfoNCELoss, KLDistillLoss, RankNetLoss, WeightedSumLoss


def make_batch():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 4, generator=generator).tanh().requires_grad_(True)
    teacher = torch.randn(2, 4, generator=generator)
    mask = torch.tensor([[True, True, True, False], [True] * 4])
    positive = torch.tensor([[True, False, False, False], [False, False, True, False]])
    return student, teacher, mask, positive


def test_is_the_weighted_sum_and_keeps_detached_components():
    student, teacher, mask, positive = make_batch()
    kl, infonce = KLDistillLoss(), InfoNCELoss()
    combined = WeightedSumLoss({"kl": kl, "infonce": infonce}, {"kl": 1.0, "infonce": 0.1})
    loss = combined(student, teacher, mask, positive)
    parts = {"kl": kl(student, teacher, mask, positive), "infonce": infonce(student, teacher, mask, positive)}
    assert torch.allclose(loss, parts["kl"] + 0.1 * parts["infonce"])
    assert set(combined.components) == {"kl", "infonce"}
    for name, value in combined.components.items():
        assert not value.requires_grad
        assert torch.allclose(value, parts[name])
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_zero_weight_is_logged_but_not_trained():
    student, teacher, mask, positive = make_batch()
    combined = WeightedSumLoss({"kl": KLDistillLoss(), "ranknet": RankNetLoss()}, {"kl": 1.0, "ranknet": 0.0})
    combined(student, teacher, mask, positive).backward()
    assert student.grad is not None
    alone = student.detach().clone().requires_grad_(True)
    KLDistillLoss()(alone, teacher, mask, positive).backward()
    assert torch.allclose(student.grad, alone.grad)
    assert combined.components["ranknet"] > 0


def test_submodules_are_registered():
    combined = WeightedSumLoss({"kl": KLDistillLoss(), "infonce": InfoNCELoss()}, {"kl": 1.0, "infonce": 0.1})
    assert isinstance(combined.losses, torch.nn.ModuleDict)
    assert {name for name, _ in combined.named_children()} == {"losses"}
    assert set(dict(combined.named_modules())) == {"", "losses", "losses.kl", "losses.infonce"}


def test_mismatched_keys_list_both():
    with pytest.raises(ValueError, match=r"losses: \['infonce', 'kl'\], weights: \['kl', 'rank'\]"):
        WeightedSumLoss({"kl": KLDistillLoss(), "infonce": InfoNCELoss()}, {"kl": 1.0, "rank": 0.1})


@pytest.mark.parametrize(("weight", "message"), [(-0.5, ">= 0"), (float("nan"), "finite"), ("1", "finite")])
def test_bad_weights_raise(weight, message):
    with pytest.raises(ValueError, match=rf"loss\.weights\.kl must be .*{message}"):
        WeightedSumLoss({"kl": KLDistillLoss()}, {"kl": weight})


def test_empty_or_non_module_losses_raise():
    with pytest.raises(ValueError, match="at least one"):
        WeightedSumLoss({}, {})
    with pytest.raises(ValueError, match=r"loss\.losses\.kl must be a loss module"):
        WeightedSumLoss({"kl": "KLDistillLoss"}, {"kl": 1.0})  # type: ignore[dict-item]


def test_kl_infonce_config_checks_and_instantiates(compose_cfg):
    cfg = compose_cfg("config", ["loss=kl_infonce"])
    check_config(cfg, ("loss",))
    combined = instantiate(cfg.loss)
    assert isinstance(combined, WeightedSumLoss)
    assert isinstance(combined.losses["kl"], KLDistillLoss) and isinstance(combined.losses["infonce"], InfoNCELoss)
    assert combined.weights == {"kl": 1.0, "infonce": 0.1}
    student, teacher, mask, positive = make_batch()
    combined(student, teacher, mask, positive).backward()
    assert set(combined.components) == {"kl", "infonce"}


def hyperparameters(module: torch.nn.Module) -> dict:
    return {key: value for key, value in vars(module).items() if not key.startswith("_") and key != "training"}


@pytest.mark.parametrize("option", ["kl", "listnet", "listmle", "ranknet", "margin_mse", "multi_positive_infonce"])
def test_loss_configs_state_the_code_defaults(compose_cfg, option):
    cfg = compose_cfg("config", [f"loss={option}"])
    check_config(cfg, ("loss",))
    built = instantiate(cfg.loss)
    assert hyperparameters(built) and hyperparameters(built) == hyperparameters(type(built)())
