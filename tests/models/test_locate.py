from pathlib import Path

import pytest

from ragdistill.models.locate import ModelNotFoundError, resolve_model_path


def test_packaged_minilm_resolves_to_a_model_folder():
    path = Path(resolve_model_path("packaged:all-MiniLM-L6-v2"))
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()


def test_unknown_packaged_name_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError, match="all-MiniLM-L6-v2"):
        resolve_model_path("packaged:bert-tiny")


def test_missing_local_folder_and_non_model_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve_model_path(str(tmp_path))


def test_hub_ids_pass_through():
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
