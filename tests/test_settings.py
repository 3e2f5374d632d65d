"""The declarations (kinject.settings.stages, kinject.settings.services, kinject.settings.presets) and what
kinject.settings.fields does with them: describe, coerce, read, write and render as a command line. Pure Python, no
model: seconds."""

from __future__ import annotations

import dataclasses
import shlex

import pytest
from damaged_runs import fake_run

from kinject.settings import services, sources
from kinject.settings.commands import equivalent_command, option_tokens
from kinject.settings.fields import build, check_types, coerce, describe_fields, field_help, from_dict, to_dict
from kinject.settings.presets import DEFAULT_PRESET, PRESET_FIELDS, PRESETS
from kinject.settings.resolve import training_blocks
from kinject.settings.services import AppConfig, ChatConfig, PublishConfig, ServeConfig
from kinject.settings.sources import FetchConfig
from kinject.settings.stages import SECTIONS, AugmentConfig, BlocksConfig, ConfigError
from kinject.settings.training import TrainConfig

DECLARED = [*SECTIONS.values(), ServeConfig, ChatConfig, PublishConfig, AppConfig]


@pytest.mark.parametrize("cls", DECLARED, ids=lambda c: c.__name__)
def test_every_field_is_documented_and_its_default_is_valid(cls):
    infos = describe_fields(cls)
    assert infos and all(info.help.strip() for info in infos)
    assert all(field_help(cls, info.name) == info.help for info in infos)
    if cls is not sources.InputsConfig:  # the inputs' defaults are empty, which prepare refuses, not the class
        cls()


def test_fields_describe_kind_choices_aliases_and_option():
    infos = {i.name: i for i in describe_fields(TrainConfig)}
    assert infos["preset"].kind == "choice" and set(infos["preset"].choices) == set(PRESETS)
    assert infos["learning_rate"].optional and infos["learning_rate"].aliases == ("--lr",)
    assert infos["lr_scheduler"].option == "--lr-scheduler"
    assert {i.name: i.kind for i in describe_fields(FetchConfig)}["allowed_networks"] == "list"


def test_coerce_turns_form_values_into_the_fields_type():
    infos = {i.name: i for i in describe_fields(TrainConfig)}
    assert coerce(infos["lora_r"], 8.0) == 8 and isinstance(coerce(infos["lora_r"], 8.0), int)
    assert coerce(infos["lora_r"], " ") is None  # blank optional: the preset's value
    assert coerce(infos["seed"], "") == 42  # blank required: the default
    with pytest.raises(ConfigError, match="^lora_r: "):
        coerce(infos["lora_r"], 2.5)
    urls = {i.name: i for i in describe_fields(sources.InputsConfig)}["urls"]
    assert coerce(urls, "https://a.example/\n# a comment\n\n https://b.example/ ") == [
        "https://a.example/",
        "https://b.example/",
    ]


def test_build_and_from_dict_name_what_is_wrong():
    assert build(TrainConfig, {"lora_r": 4.0}, "train").lora_r == 4
    with pytest.raises(ConfigError, match="train: unknown field\\(s\\) lr_typo"):
        build(TrainConfig, {"lr_typo": 1}, "train")
    with pytest.raises(ConfigError, match="train: lora_r must be an integer, got 'abc'"):
        from_dict(TrainConfig, {"lora_r": "abc"}, "train")
    with pytest.raises(ConfigError, match="blocks: use_qa must be true or false"):
        check_types(BlocksConfig, {"use_qa": "yes"}, "blocks")
    # Keys that earlier versions wrote into config.yaml are read back without complaint.
    assert from_dict(BlocksConfig, {"block_size_used": 256, "block_size": 256}, "blocks").block_size == 256


def test_a_config_round_trips_through_plain_data():
    train = TrainConfig(preset="cpu-demo", lora_r=8, seed=7)
    assert from_dict(TrainConfig, to_dict(train), "train") == train


def test_presets_fill_the_unset_fields_and_training_blocks_layer_run_preset_given():
    for name, parts in PRESETS.items():
        train = TrainConfig(preset=name)
        for key, value in parts["train"].items():
            assert getattr(train, key) == value or (key == "epochs" and train.fact_exposures is not None)
    assert TrainConfig().preset == DEFAULT_PRESET
    assert TrainConfig(lr_scheduler="cosine").lr_scheduler == "cosine"  # a choice given beats the preset's
    assert set(PRESET_FIELDS["train"]) <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(PRESET_FIELDS["blocks"]) <= {f.name for f in dataclasses.fields(BlocksConfig)}
    blocks = training_blocks({"block_size": 128, "pad_last": True}, "cpu-demo", {"block_size": 64})
    assert (blocks.block_size, blocks.pad_last, blocks.text_format) == (64, True, "raw")


def test_equivalent_command_gives_only_what_differs():
    train = TrainConfig(preset="cpu-demo", lora_r=8, eval_at_end=True)
    baseline = TrainConfig(preset="cpu-demo")
    assert option_tokens(train, baseline) == ["--lora-r", "8", "--eval-at-end"]
    line = equivalent_command("train", ["runs/my run"], [(train, baseline)], ["--resume"])
    assert shlex.split(line) == [
        "python",
        "-m",
        "kinject",
        "train",
        "runs/my run",
        "--lora-r",
        "8",
        "--eval-at-end",
        "--resume",
    ]


def test_app_settings_come_from_the_environment_naming_the_variable():
    app = AppConfig.from_env(
        {"KINJECT_PORT": "8000", "KINJECT_ALLOW_PRIVATE_URLS": "yes", "KINJECT_ALLOWED_NETWORKS": "10.0.0.0/8, "}
    )
    assert (app.port, app.allow_private_urls, app.allowed_networks) == (8000, True, ["10.0.0.0/8"])
    assert AppConfig.env_name("max_upload_bytes") == "KINJECT_MAX_UPLOAD_BYTES"
    with pytest.raises(ConfigError, match="^KINJECT_PORT: 'abc' is not a whole number"):
        AppConfig.from_env({"KINJECT_PORT": "abc"})
    with pytest.raises(ConfigError, match="^KINJECT_PORT: must be within"):
        AppConfig.from_env({"KINJECT_PORT": "70000"})


def test_the_fetch_policy_caps_a_users_limits_at_the_operators():
    operator = AppConfig(max_upload_bytes=1000, allow_private_urls=True)
    policy = operator.fetch_policy(FetchConfig(max_file_bytes=10**9, max_redirects=2, allow_private_urls=False))
    assert (policy.max_file_bytes, policy.max_redirects, policy.allow_private_urls) == (1000, 2, True)
    assert set(services.OPERATOR_FETCH_FIELDS) <= {f.name for f in dataclasses.fields(FetchConfig)}


def test_a_value_of_the_wrong_type_names_the_field_and_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^train: lora_r must be an integer, got 'abc'$"):
        from_dict(TrainConfig, {"lora_r": "abc"}, "train")
    with pytest.raises(ConfigError, match=r"learning_rate must be a number, got 'fast'"):
        from_dict(TrainConfig, {"learning_rate": "fast"}, "train")
    with pytest.raises(ConfigError, match=r"eval_at_end must be true or false, got 'yes please'"):
        from_dict(TrainConfig, {"eval_at_end": "yes please"}, "train")
    assert from_dict(TrainConfig, {"lora_r": 8, "lora_dropout": 0, "max_steps": None}, "train").lora_r == 8
    run = fake_run(tmp_path / "run")
    run.write_config({"model": {"model": "m"}, "train": {"lora_r": "abc"}})
    with pytest.raises(ConfigError, match=rf"^{run.config_path}: train: lora_r must be an integer, got 'abc'$"):
        run.section("train")


def test_seeds_must_fit_the_generators():
    for make in (lambda s: TrainConfig(seed=s), lambda s: AugmentConfig(augment_seed=s)):
        make(0), make(2**32 - 1)
        for bad in (2**80, -1, 2**32):
            with pytest.raises(ConfigError, match=r"seed: must be within 0\.\.4294967295"):
                make(bad)
