"""Recipes: every file in configs/ parses; bad keys and types are errors naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from idfu_lab.config import Config, config_hash, describe, load_config, resolve_data_path
from idfu_lab.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_parses(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.seeds and all(isinstance(s, int) for s in cfg.seeds)


def test_profiles_by_name() -> None:
    assert load_config("tiny").profile == "tiny"
    assert load_config("paper").profile == "paper"


def test_which_recipes_use_bitsandbytes() -> None:
    """Only these may import it: its notebook kernels and training processes start without it otherwise."""
    assert load_config("paper").uses_bitsandbytes  # a 4-bit base
    assert not load_config("tiny").uses_bitsandbytes and not load_config("tiny-humaneval").uses_bitsandbytes
    for optim, uses in (
        ("paged_adamw_8bit", True),
        ("adamw_bnb_8bit", True),
        ("lion_32bit", True),
        ("sgd", False),
    ):
        assert load_config("tiny", overrides={"dpo.optim": optim}).uses_bitsandbytes is uses


def _write(tmp_path: Path, data: dict) -> Path:
    base = yaml.safe_load((CONFIGS[0].parent / "tiny.yaml").read_text())
    for dotted, value in data.items():
        node = base
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(base))
    return p


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    p = _write(tmp_path, {"dpo.learning_rat": 1e-5})
    with pytest.raises(ConfigError, match=r"c\.yaml.*unknown key 'dpo\.learning_rat'"):
        load_config(p)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seeds", ["a"], r"seeds\[0\].*integer"),
        ("dpo.beta", "high", r"'dpo\.beta' must be a number"),
        ("lora.r", 1.5, r"'lora\.r' must be an integer"),
        ("model.load_in_4bit", "yes", r"'model\.load_in_4bit' must be true or false"),
        ("evaluation.postprocess", "magic", r"'evaluation\.postprocess' must be one of"),
        ("profile", "huge", r"'profile' must be one of"),
        ("dpo.max_prompt_length", 4096, r"max_prompt_length' must be below"),
        ("evaluation.timeout", "fast", r"'evaluation\.timeout' must be a number or 'auto'"),
        ("evaluation.timeout", 0, r"'evaluation\.timeout' must be a positive number of seconds or auto"),
    ],
)
def test_wrong_types_are_errors(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, {key: value}))


def test_timeout_is_seconds_or_auto(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, {"evaluation.timeout": "auto"})).evaluation.timeout == "auto"
    assert load_config(_write(tmp_path, {"evaluation.timeout": 5})).evaluation.timeout == 5.0


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dpo:\n  beta: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*line \d+.*not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("huge")


def test_hash_ignores_comments_but_not_values(tmp_path: Path) -> None:
    text = (CONFIGS[0].parent / "tiny.yaml").read_text()
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(text)
    b.write_text("# another comment\n" + text)
    assert config_hash(load_config(a)) == config_hash(load_config(b))
    assert config_hash(load_config(a)) != config_hash(load_config(a, overrides={"dpo.beta": 0.2}))


def test_overrides_and_describe() -> None:
    cfg = load_config("tiny", overrides={"dpo.max_steps": 2, "generation.max_new_tokens": 8})
    assert cfg.dpo.max_steps == 2 and cfg.generation.max_new_tokens == 8
    keys = {k for k, _, _ in describe()}
    assert {"lora.r", "dpo.beta", "dpo.max_prompt_length", "model.bnb_4bit_quant_type", "seeds"} <= keys
    assert all(help_text for _, _, help_text in describe())


def test_data_paths_resolve_from_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config("tiny")
    assert resolve_data_path("configs/tiny.yaml") is not None
    assert resolve_data_path("no/such/file.jsonl") is None
    assert cfg.data.pairs


ACCELERATE = sorted((Path(__file__).resolve().parents[1] / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE, ids=[p.name for p in ACCELERATE])
def test_every_accelerate_config_parses_as_accelerate_reads_it(path: Path) -> None:
    """The launch configs are Accelerate's own format: read them with Accelerate's own loader."""
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(path)
    assert cfg.num_processes >= 1
    assert cfg.compute_environment.value == "LOCAL_MACHINE"


def test_a_key_given_twice_is_an_error_naming_it_and_its_lines(tmp_path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("profile: tiny\ndpo:\n  beta: 0.1\nlora:\n  r: 8\ndpo:\n  beta: 0.5\n")
    with pytest.raises(
        ConfigError, match=r"twice\.yaml: line 6 .*key 'dpo' is given twice \(lines 2 and 6\)"
    ):
        load_config(path)
    path.write_text("profile: tiny\ndpo:\n  beta: 0.1\n  beta: 0.2\n")
    with pytest.raises(ConfigError, match=r"key 'beta' is given twice \(lines 3 and 4\)"):
        load_config(path)
