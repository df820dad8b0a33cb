"""The config file: defaults, per-folder overrides, environment, one clear line per problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomli_w
import tomllib

from daemonkit import REPO, folder_block, write_config
from sfumato.cli import main
from sfumato.config import (
    CheckSettings,
    DaemonSettings,
    Defaults,
    FolderSettings,
    PoisonSettings,
    load_config,
)
from sfumato.config_file import config_path, default_folders, render_default_config
from sfumato.errors import ConfigError
from sfumato.options import DEFAULT_ENCODERS, CheckRequest
from sfumato.specs import PoisonRequest

EXAMPLE = REPO / "config.example.toml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private home: nothing may touch the real user's config, data or pictures."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_PICTURES_DIR", "SFUMATO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return home


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).splitlines()


def test_example_config_is_valid_and_documents_every_key():
    config = load_config(EXAMPLE)
    text = EXAMPLE.read_text()
    assert len(config.folders) == 1
    assert config.folders[0].outbox == Path("~/Pictures/sfumato/outbox").expanduser()
    models = (Defaults, CheckSettings, DaemonSettings, FolderSettings, PoisonSettings)
    for model in models:
        for key in model.model_fields:
            documented = rf"^(#? ?{key} = |\[\w+\.{key}\]$)"
            assert re.search(documented, text, re.M), f"{key} is not in config.example.toml"


def test_example_is_what_init_writes_for_the_usual_pictures_folder():
    """The packaged template and the documented example cannot drift apart."""
    expected = render_default_config(default_folders(Path("~/Pictures/sfumato")))
    assert EXAMPLE.read_text() == expected


def test_defaults_without_a_file(home):
    config = load_config(None)
    options = config.options_for(FolderSettings(outbox="a", ready="b", originals="c", failed="d"))
    assert options.style == "auto" and options.intensity == "default"
    assert options.encoders == DEFAULT_ENCODERS and options.poison is None
    assert config.daemon.workers == 1 and config.daemon.nice == 10
    assert config.daemon.state_dir == home / ".local/share/sfumato"


def test_folder_keys_override_defaults(tmp_path):
    extra = 'intensity = 12\nstyle = "pixelart"\n[folders.check]\nthreshold = 0.9\n'
    extra += '[folders.poison]\nenabled = true\nconcept = "cow"\ntarget = "handbag"\n'
    path = write_config(
        tmp_path,
        defaults='quality = "fast"\nintensity = "high"',
        folders=folder_block(tmp_path, "a", extra) + folder_block(tmp_path, "b"),
    )
    config = load_config(path)
    first, second = (config.options_for(f) for f in config.folders)
    assert (first.intensity, first.style, first.quality) == (12.0, "pixelart", "fast")
    assert first.poison == PoisonRequest("cow", "handbag")
    assert first.check == CheckRequest(enabled=True, encoder="effnet-lite:1", threshold=0.9)
    assert (second.intensity, second.style, second.poison) == ("high", "auto", None)


def test_recorded_target_replaces_only_an_auto_style(tmp_path):
    folders = folder_block(tmp_path, "a") + folder_block(tmp_path, "b", 'style = "ink"')
    config = load_config(write_config(tmp_path, folders=folders))
    auto, fixed = config.folders
    assert config.options_for(auto, style="pixelart").style == "pixelart"
    assert config.options_for(fixed, style="pixelart").style == "ink"


def test_paths_accept_tilde_and_are_relative_to_the_config_file(tmp_path, home):
    path = tmp_path / "conf" / "sfumato.toml"
    path.parent.mkdir()
    path.write_text(
        '[[folders]]\noutbox = "~/art/outbox"\nready = "ready"\noriginals = "../originals"\n'
        'failed = "/srv/failed"\n'
    )
    folder = load_config(path).folders[0]
    assert folder.outbox == home / "art/outbox"
    assert folder.ready == path.parent / "ready"
    assert folder.originals == path.parent / "../originals"
    assert folder.failed == Path("/srv/failed")


def test_relative_paths_do_not_depend_on_the_working_directory(tmp_path, home, monkeypatch):
    """The service runs with any working directory: folders, state, poison anchors, reference
    folders and encoder weights named relative to the config file stay next to it."""
    conf = tmp_path / "conf"
    for name in ("refs", "pixelart", "models"):
        (conf / name).mkdir(parents=True)
    (conf / "sfumato.toml").write_text(
        '[daemon]\nstate_dir = "state"\n[defaults]\nstyle = "refs"\n'
        'encoders = ["tae:flux2@models", "openclip:ViT-B-32@weights/model.pt", "effnet-lite:0", '
        '"openclip:ViT-B-32@~/model.pt", "tae:flux2@/srv/taef2"]\n'
        '[defaults.check]\nencoder = "openclip:ViT-B-32@weights/check.pt"\n'
        '[[folders]]\noutbox = "in"\nready = "ready"\noriginals = "originals"\nfailed = "failed"\n'
        'style = "styles/ink"\n[folders.poison]\nenabled = true\nanchors = "handbags"\n'
        '[[folders]]\noutbox = "in2"\nready = "ready2"\noriginals = "originals2"\nfailed = "failed2"\n'
        'style = "pixelart"\n[[folders]]\noutbox = "in3"\nready = "ready3"\noriginals = "o3"\n'
        'failed = "f3"\nstyle = "ink wash"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "refs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/sfumato.toml"))  # a relative --config, too
    monkeypatch.chdir(elsewhere)
    first, second, third = config.folders
    assert (first.outbox, first.ready, first.failed) == (conf / "in", conf / "ready", conf / "failed")
    assert config.daemon.state_dir == conf / "state"
    options = config.options_for(first)
    assert options.poison_anchors == conf / "handbags"
    assert options.encoders == (
        f"tae:flux2@{conf / 'models'}",
        f"openclip:ViT-B-32@{conf / 'weights/model.pt'}",
        "effnet-lite:0",
        f"openclip:ViT-B-32@{home / 'model.pt'}",
        "tae:flux2@/srv/taef2",
    )
    assert options.check.encoder == f"openclip:ViT-B-32@{conf / 'weights/check.pt'}"
    assert options.style == str(conf / "styles/ink")  # looks like a path, even before it exists
    assert config.defaults.style == str(conf / "refs")  # a folder next to the file, not in the cwd
    assert config.options_for(second).style == "pixelart"  # a built-in style wins over a folder
    assert config.options_for(third).style == "ink wash"  # text stays text


def test_without_a_file_paths_stay_as_given(home, monkeypatch):
    monkeypatch.setenv("SFUMATO_DEFAULTS__ENCODERS", '["tae:flux2@models"]')
    monkeypatch.setenv("SFUMATO_DAEMON__STATE_DIR", "state")
    config = load_config(None)
    assert config.defaults.encoders == ["tae:flux2@models"] and config.daemon.state_dir == Path("state")


def test_one_line_per_problem_naming_file_and_key(tmp_path):
    path = write_config(
        tmp_path,
        daemon='workers = "two"',
        defaults='qualty = "fast"\nmetadata = "shred"',
        folders=folder_block(tmp_path, "a", 'intensity = "extreme"'),
    )
    lines = problems(path)
    assert len(lines) == 4
    assert all(line.startswith(f"{path}: ") for line in lines)
    text = "\n".join(lines)
    assert "folders[0].intensity: intensity must be one of" in text and "'extreme'" in text
    assert "defaults.qualty: unknown key" in text
    assert "defaults.metadata: metadata must be one of keep, strip" in text
    assert "daemon.workers: " in text and "'two'" in text


def test_folder_must_name_four_distinct_folders(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[folders]]\noutbox = "in"\nready = "in"\noriginals = "o"\n')
    lines = problems(path)
    assert lines == [f"{path}: folders[0].failed: required key is missing"]
    path.write_text('[[folders]]\noutbox = "in"\nready = "in"\noriginals = "o"\nfailed = "f"\n')
    (line,) = problems(path)
    assert "folders[0]" in line and "ready and outbox must be different folders" in line


def test_one_folder_results_must_not_be_another_folders_outbox(tmp_path):
    a = folder_block(tmp_path, "a")
    b = a.replace(str(tmp_path / "a" / "outbox"), str(tmp_path / "b" / "outbox"))
    b = b.replace(str(tmp_path / "a" / "ready"), str(tmp_path / "a" / "outbox"))
    (line,) = problems(write_config(tmp_path, folders=a + b))
    assert "folders[1].ready is the outbox of folders[0]" in line


def test_broken_toml_is_one_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[defaults\nstyle = 1\n")
    (line,) = problems(path)
    assert line.startswith(f"{path}: not valid TOML")


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write_config(tmp_path, defaults='intensity = "low"')
    monkeypatch.setenv("SFUMATO_DEFAULTS__INTENSITY", "max")
    monkeypatch.setenv("SFUMATO_DAEMON__WORKERS", "3")
    config = load_config(path)
    assert config.defaults.intensity == "max" and config.daemon.workers == 3
    assert config.daemon.settle_seconds == 0.2  # the rest of the file still applies
    monkeypatch.setenv("SFUMATO_DAEMON__NICE", "99")
    (line,) = problems(path)
    assert "daemon.nice" in line and "99" in line


def test_config_path_precedence(home, monkeypatch, tmp_path):
    assert config_path() == home / ".config/sfumato/config.toml"
    monkeypatch.setenv("SFUMATO_CONFIG", str(tmp_path / "env.toml"))
    assert config_path() == tmp_path / "env.toml"
    assert config_path(str(tmp_path / "cli.toml")) == tmp_path / "cli.toml"


def test_validate_exits_2_with_problem_lines_and_0_when_fine(tmp_path, capsys):
    good = write_config(tmp_path)
    assert main(["config", "--config", str(good), "validate"]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[daemon]\nlog_level = "loud"\nwokers = 2\n')
    assert main(["config", "validate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "daemon.log_level" in err and "daemon.wokers: unknown key" in err


def test_init_writes_default_and_refuses_to_overwrite(home, capsys):
    assert main(["config", "init"]) == 0
    path = home / ".config/sfumato/config.toml"
    config = load_config(path)
    assert config.folders[0].outbox == home / "Pictures/sfumato/outbox"
    path.write_text("# mine\n")
    assert main(["config", "init"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"
    assert main(["config", "init", "--force"]) == 0
    assert load_config(path).folders


def test_show_prints_the_effective_config_as_toml(tmp_path, capsys, monkeypatch):
    path = write_config(tmp_path, defaults='style = "ink"')
    monkeypatch.setenv("SFUMATO_DEFAULTS__QUALITY", "slow")
    assert main(["config", "--config", str(path), "show"]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["defaults"]["style"] == "ink" and shown["defaults"]["quality"] == "slow"
    assert shown["folders"][0]["outbox"] == str(tmp_path / "art" / "outbox")
    again = tmp_path / "again.toml"
    again.write_text(tomli_w.dumps(shown))  # what show prints is itself a valid config
    assert load_config(again) == load_config(path)


def test_path_prints_where_the_file_is(home, capsys):
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(home / ".config/sfumato/config.toml")
