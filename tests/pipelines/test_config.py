"""Config loading: typed sections, unknown keys listed, label maps as lookup tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import IGNORE, load_config
from wsi_downsample.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_six_gleason_classes() -> None:
    config = load_config()
    assert [c.name for c in config.classes] == [
        "background",
        "benign",
        "Gleason 3",
        "Gleason 4",
        "atrophy",
        "HGPIN",
    ]
    assert config.num_classes == 6
    assert config.sampler.dynamic == "80x800"
    assert config.data.source_mpp == 0.5


def test_shipped_configs_load() -> None:
    default = load_config(REPO / "configs" / "default.yaml")
    assert default == load_config()
    gleason = load_config(REPO / "configs" / "gleason_examples.yaml")
    assert gleason.sampler.size == "48x48" and gleason.sampler.dynamic is None
    lut = gleason.label_lut("ing2018")
    # 0 G3 -> 2, 1 G4 -> 3, 2 G5 -> ignore, 3 benign -> 1, 4 stroma -> background 0
    assert lut[:5].tolist() == [2, 3, IGNORE, 1, 0]
    assert lut[5] == IGNORE


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sampler:\n  nmae: edge\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['nmae'\].*valid keys: .*'name'"):
        load_config(path)


def test_unknown_top_level_section(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("trainer: {}\n")
    with pytest.raises(ConfigError, match="trainer"):
        load_config(path)


def test_label_map_must_name_known_classes(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("label_maps:\n  x: {0: Gleason 5}\n")
    with pytest.raises(ConfigError, match="Gleason 5"):
        load_config(path)


def test_wrong_type_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sampler:\n  radius: ten\n")
    with pytest.raises(ConfigError, match="radius"):
        load_config(path)


def test_overrides_win_and_one_budget_required() -> None:
    config = load_config(overrides={"sampler.name": "edge", "sampler.radius": None})
    assert config.sampler.name == "edge" and config.sampler.radius == 10
    with pytest.raises(ConfigError, match="exactly one of size"):
        load_config(overrides={"sampler.size": "48x48"})


def test_identity_lut_and_unknown_map() -> None:
    config = load_config()
    lut = config.label_lut(None)
    assert lut[:6].tolist() == [0, 1, 2, 3, 4, 5] and lut[6] == IGNORE
    with pytest.raises(ConfigError, match="unknown label map 'nope'"):
        config.label_lut("nope")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_default_yaml_documents_exactly_the_defaults(repo_root) -> None:
    import dataclasses

    from pipelines.config import Config

    loaded = load_config(repo_root / "configs" / "default.yaml")
    assert loaded == load_config()
    for section in dataclasses.fields(Config):
        value = getattr(Config(), section.name)
        if dataclasses.is_dataclass(value):
            text = (repo_root / "configs" / "default.yaml").read_text()
            missing = [f.name for f in dataclasses.fields(value) if f"  {f.name}:" not in text]
            assert not missing, (section.name, missing)
