import pytest

from ragdistill.config_check import ConfigError, check_config


def test_shipped_configs_pass(compose_cfg):
    for experiment in ("quickstart", "gold_squad", "fixture_smoke"):
        check_config(compose_cfg("config", [f"experiment={experiment}", "logger=many"]))
    check_config(compose_cfg("eval"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.temperature=abc", r"loss.temperature='abc' \(str\) does not fit .*expected float"),
        ("datamodule.batch_size=1.5", r"datamodule.batch_size=1.5 .*expected int"),
        ("retriever.normalize=yes", r"retriever.normalize='yes' .*expected bool"),
        ("evaluation.fusion=rrf", None),
        ("candidates.k=50", None),
    ],
)
def test_wrong_types_are_named(compose_cfg, override, message):
    cfg = compose_cfg("config", [override])
    if message is None:
        check_config(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_keys_the_target_does_not_take_list_the_valid_ones(compose_cfg):
    cfg = compose_cfg("config", ["+teacher.depth=3"])
    with pytest.raises(
        ConfigError, match=r"teacher.depth: .*GoldTeacher takes no argument 'depth'; valid keys: .*num_candidates"
    ):
        check_config(cfg)


def test_unimportable_target(compose_cfg):
    cfg = compose_cfg("config", ["loss._target_=ragdistill.losses.nope.Missing"])
    with pytest.raises(ConfigError, match="cannot be imported"):
        check_config(cfg)


def test_objects_inside_a_dict_argument_are_checked(compose_cfg):
    cfg = compose_cfg("config", ["loss=kl_infonce", "+loss.losses.kl.tau_studnt=0.1"])  # `+` gets past Hydra
    with pytest.raises(ConfigError, match=r"loss\.losses\.kl\.tau_studnt.*valid keys"):
        check_config(cfg)
