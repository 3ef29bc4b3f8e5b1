import pytest

from ragdistill.config_check import check_config
from ragdistill.utils.errors import ConfigError


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
    _check(compose_cfg, override, message)


def _check(compose_cfg, override: str, message: str | None) -> None:
    """``override`` passes the check (``message`` None) or fails with a ConfigError matching ``message``."""
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


def test_keys_a_subclass_forwards_to_its_base_are_checked_against_the_base(compose_cfg):
    """``LMLikelihoodTeacher(**kwargs)`` passes them to ``LMTeacher``: a typo there fails now, not after the data."""
    cfg = compose_cfg("config", ["teacher=lm_likelihood", "+teacher.max_batch_sise=8"])
    with pytest.raises(ConfigError, match=r"teacher\.max_batch_sise: .*valid keys: .*'max_batch_size'.*'target'"):
        check_config(cfg)
    check_config(compose_cfg("config", ["teacher=lm_likelihood", "teacher.max_batch_size=8"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("datamodule.batch_size=-8", r"datamodule\.batch_size=-8 \(int\) .*DistillationDataModule: expected int >= 1$"),
        ("loss.temperature=0", r"loss\.temperature=0 \(int\) .*InfoNCELoss: expected float > 0$"),
        ("candidates.k=0", r"candidates\.k=0 \(int\) .*BM25Candidates: expected int >= 1$"),
        ("index.kind=ivf", r"index\.kind='ivf' \(str\) .*FaissIndex: expected one of \['flat', 'hnsw', 'ivfpq'\]$"),
        ("lm.dtype=float8", r"lm\.dtype='float8' .*: expected one of \['float32', 'bfloat16', 'float16'\]$"),
        ("trainer.precision=bf17", r"trainer\.precision='bf17' .*Trainer: expected one of \[.*'bf16-mixed'.*\]$"),
        (
            "evaluation.precision=fp8",
            r"evaluation\.precision='fp8' \(str\) does not fit .*EvaluationSettings",
        ),
        ("evaluation.encode_batch_size=0", r"evaluation\.encode_batch_size=0 .*: expected int >= 1$"),
        ("candidates.method=bm26", r"candidates\.method='bm26' .*: expected one of \['lucene', 'robertson'"),
        ("datamodule.group_size=null", None),
        ("evaluation.precision=32", None),
    ],
)
def test_values_outside_a_documented_limit_fail_before_any_work(compose_cfg, override, message):
    _check(compose_cfg, override, message)


# --- the whole run, before any work (issue 29) ----------------------------------------------------


def test_shipped_runs_pass_the_whole_check(compose_cfg):
    from ragdistill.config_check import check_run

    for experiment in ("quickstart", "gold_squad", "fixture_smoke"):
        check_run(compose_cfg("config", [f"experiment={experiment}"]))
    check_run(compose_cfg("eval"))


def test_every_missing_value_is_named_at_once(compose_cfg):
    from ragdistill.config_check import check_missing

    with pytest.raises(ConfigError, match=r"^mandatory values missing: data\.corpus_path, data\.eval_path; give"):
        check_missing(compose_cfg("config", ["data=jsonl"]))
    check_missing(compose_cfg("config", ["data=jsonl", "data.corpus_path=c.jsonl", "data.eval_path=e.jsonl"]))


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["+ckpt=x.ckpt"], "ckpt"),
        (["++max_epochs=3"], "max_epochs"),
        (["+trainer.max_steps=3"], None),  # nested: the trainer's own check judges it
        (["+sweep=train_size"], None),  # a config group
        (["ckpt_path=null"], None),
    ],
)
def test_top_level_keys_nothing_reads_are_refused(compose_cfg, overrides, refused):
    from ragdistill.config_check import check_top_level_keys

    cfg = compose_cfg("config", overrides)
    if refused is None:
        check_top_level_keys(cfg)
        return
    with pytest.raises(ConfigError, match=rf"reads no top-level key '{refused}'.*'ckpt_path'"):
        check_top_level_keys(cfg)


def test_ckpt_path_is_a_declared_top_level_key(compose_cfg):
    """``ckpt_path`` (lightning-hydra-template's key) is null by default; ``+ckpt_path=`` just sets it."""
    from ragdistill.config_check import check_top_level_keys

    assert compose_cfg("config").ckpt_path is None
    cfg = compose_cfg("config", ["+ckpt_path=x.ckpt"])
    assert cfg.ckpt_path == "x.ckpt"
    check_top_level_keys(cfg)


def test_a_checkpoint_that_is_not_there_is_refused(compose_cfg, tmp_path):
    from ragdistill.config_check import check_checkpoint

    with pytest.raises(ConfigError, match=r"^ckpt_path='.*nope\.ckpt': no such checkpoint file"):
        check_checkpoint(compose_cfg("config", [f"ckpt_path={tmp_path / 'nope.ckpt'}"]))
    (tmp_path / "last.ckpt").write_bytes(b"x")
    check_checkpoint(compose_cfg("config", [f"ckpt_path={tmp_path / 'last.ckpt'}"]))


def test_a_gpu_trainer_is_refused_where_torch_sees_no_gpu(compose_cfg, monkeypatch):
    import torch

    from ragdistill.config_check import check_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^trainer\.accelerator='gpu': .*use trainer=cpu"):
        check_accelerator(compose_cfg("config", ["trainer=gpu"]))
    check_accelerator(compose_cfg("config", ["trainer=cpu"]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_accelerator(compose_cfg("config", ["trainer=gpu"]))


def test_a_callback_watching_validation_needs_a_validation_split(compose_cfg):
    """ModelCheckpoint on val/loss with val_size=0 never sees its metric: refused before any work, not warned after."""
    from ragdistill.config_check import check_monitors

    check_monitors(compose_cfg("config", ["callbacks=checkpoints"]))  # val_size 100: fine
    check_monitors(compose_cfg("config", ["datamodule.val_size=0"]))  # no checkpoint callback by default
    with pytest.raises(ConfigError, match=r"^callbacks\.model_checkpoint\.monitor='val/loss': datamodule\.val_size=0"):
        check_monitors(compose_cfg("config", ["callbacks=checkpoints", "datamodule.val_size=0"]))


def test_callbacks_checkpoints_adds_only_the_model_checkpoint(compose_cfg):
    default, checkpoints = compose_cfg("config").callbacks, compose_cfg("config", ["callbacks=checkpoints"]).callbacks
    assert "model_checkpoint" not in default
    assert set(checkpoints) - set(default) == {"model_checkpoint"}
    assert checkpoints.model_checkpoint.save_weights_only is True
