"""Specs parsed once, at the edge: a bad encoder in the config is one sentence from `config
validate`, not a failure at daemon start; `sfumato cloak` starts from the config's [defaults]."""

from __future__ import annotations

import argparse
import importlib.util

import pytest

from daemonkit import write_config
from sfumato.cli import main
from sfumato.commands import cloak as cloak_command
from sfumato.errors import EncoderError, UnknownEncoderError, UsageError
from sfumato.options import DEFAULT_ENCODERS, CheckRequest
from sfumato.specs import (
    EncoderKind,
    PoisonRequest,
    StyleKind,
    parse_checked_poison,
    parse_encoder,
    parse_style,
)

needs_open_clip = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip")


def test_encoder_specs_become_typed_values(tmp_path):
    spec = parse_encoder(" effnet-lite:1 ")
    assert (spec.kind, spec.model, spec.text) == (EncoderKind.EFFNET_LITE, "1", "effnet-lite:1")
    tae = parse_encoder(f"tae:flux2@{tmp_path}")
    assert (tae.kind, tae.model, tae.path) == (EncoderKind.TAE, "flux2", tmp_path)


@needs_open_clip
def test_open_clip_model_families_are_known_without_torch():
    spec = parse_encoder("openclip:ViT-B-32/laion2b_s34b_b79k")
    assert (spec.kind, spec.model, spec.tag, spec.rest) == (
        EncoderKind.OPENCLIP,
        "ViT-B-32",
        "laion2b_s34b_b79k",
        "ViT-B-32/laion2b_s34b_b79k",
    )
    assert parse_encoder("openclip:sfumato-tiny/random").model == "sfumato-tiny"  # the project's own
    with pytest.raises(UnknownEncoderError, match="unknown open_clip model 'ViT-Q-99'"):
        parse_encoder("openclip:ViT-Q-99/laion")


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("nonsense:model", UnknownEncoderError),
        ("effnet-lite:7", UnknownEncoderError),
        ("tae:sd3", UnknownEncoderError),
        ("tae:flux2@", EncoderError),
        ("openclip:ViT-B-32", EncoderError),
    ],
)
def test_bad_encoder_specs_are_one_sentence(spec, error):
    with pytest.raises(error) as caught:
        parse_encoder(spec)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("encoder", "said"),
    [
        (
            "nonsense:model",
            "unknown encoder 'nonsense:model': use one of openclip:..., effnet-lite:..., tae:...",
        ),
        ("effnet-lite:7", "unknown encoder 'effnet-lite:7': use effnet-lite:0, 1 or 2"),
    ],
)
def test_config_validate_rejects_an_unknown_encoder_kind_or_family(tmp_path, capsys, encoder, said):
    path = write_config(tmp_path, defaults=f'encoders = ["{encoder}"]')
    assert main(["config", "validate", "--config", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"sfumato: {path}: defaults.encoders: {said}"


@needs_open_clip
def test_config_validate_rejects_an_unknown_check_encoder_family(tmp_path, capsys):
    path = write_config(tmp_path, defaults='[defaults.check]\nencoder = "openclip:ViT-Q-99@model.pt"')
    assert main(["config", "validate", "--config", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "defaults.check.encoder: unknown open_clip model 'ViT-Q-99'" in line


def test_style_and_poison_specs(tmp_path):
    assert parse_style("Halftone").kind is StyleKind.BUILTIN
    assert parse_style(str(tmp_path)).kind is StyleKind.FOLDER
    assert parse_style("ink wash").kind is StyleKind.TEXT
    assert parse_checked_poison("purse") == PoisonRequest("auto", "purse")
    assert parse_checked_poison("cow:handbag") == PoisonRequest("cow", "handbag")
    with pytest.raises(UsageError, match="needs the target concept"):
        parse_checked_poison("cow:auto")


def cloak_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cloak_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["cloak", "a.png", *argv])


@pytest.fixture
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SFUMATO_CONFIG", raising=False)


def test_cloak_starts_from_the_config_files_defaults(tmp_path, monkeypatch):
    defaults = (
        'intensity = "high"\nquality = "fast"\nseed = 7\nencoders = ["effnet-lite:2"]\n'
        "skip_unavailable_encoders = false\n[defaults.check]\nthreshold = 0.2\n"
    )
    monkeypatch.setenv("SFUMATO_CONFIG", str(write_config(tmp_path, defaults=defaults)))
    chosen = cloak_command.options_from(cloak_args())
    assert (chosen.intensity, chosen.quality, chosen.seed) == ("high", "fast", 7)
    assert chosen.encoders == ("effnet-lite:2",) and not chosen.skip_unavailable_encoders
    assert chosen.check == CheckRequest(enabled=True, encoder=None, threshold=0.2)
    assert (chosen.style, chosen.metadata, chosen.device) == ("auto", "strip", "auto")  # not in the file


def test_cloak_flags_override_the_config_files_defaults(tmp_path):
    path = write_config(tmp_path, defaults='intensity = "high"\nseed = 7\n[defaults.check]\nthreshold = 0.2')
    args = cloak_args("--config", str(path), "--intensity", "low", "--seed", "3", "--check-threshold", "0.4")
    chosen = cloak_command.options_from(args)
    assert (chosen.intensity, chosen.seed, chosen.check.threshold) == ("low", 3, 0.4)


def test_cloak_without_a_config_file_keeps_its_own_defaults(no_user_config):
    chosen = cloak_command.options_from(cloak_args())
    assert (chosen.intensity, chosen.quality, chosen.seed, chosen.style) == ("default", "default", 0, "auto")
    assert chosen.encoders == DEFAULT_ENCODERS and chosen.skip_unavailable_encoders
    assert chosen.check == CheckRequest(enabled=True)


def test_cloak_names_a_bad_encoder_before_loading_anything(no_user_config):
    with pytest.raises(UnknownEncoderError, match="nonsense:model"):
        cloak_command.options_from(cloak_args("--encoder", "nonsense:model"))


def test_seed_and_device_have_help(capsys):
    with pytest.raises(SystemExit):
        main(["cloak", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "--seed SEED seed of the search" in text
        and "--device {auto,cpu,cuda,mps} where the search runs" in text
    )
