"""`sfumato service`: the unit verifies, the plist is well formed, dry runs change nothing."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from sfumato import cli
from sfumato.commands import service as command
from sfumato.services import context, launchd, systemd
from sfumato.services.steps import ServiceError

ODD = 'my art\'s "best" 100% $HOME \\ & <b>'  # spaces, quotes, specifiers, variables, XML


class FakeSystem:
    """Records commands instead of running them; answers from a table of canned results."""

    def __init__(self, answers: dict[str, tuple[int, str, str]] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(tuple(argv))
        for needle, (code, out, err) in self.answers.items():
            if needle in " ".join(argv):
                return subprocess.CompletedProcess(list(argv), code, out, err)
        return subprocess.CompletedProcess(list(argv), 0, "", "")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder, so nothing real is installed or read."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("SFUMATO_CONFIG", raising=False)
    return home


@pytest.fixture()
def on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real installs are only allowed for this machine's platform: pretend it is Linux."""
    monkeypatch.setattr(command, "current_platform", lambda: "linux")


@pytest.fixture()
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a dry run ran a command: {args}")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)


def written_file(output: str, suffix: str) -> str:
    """The full text a dry run printed for the file ending in ``suffix``."""
    lines = output.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith(f"{suffix}:"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("would "))
    return "".join(lines[start + 1 : end])


def verify_unit(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    folder = tmp_path / "verify"
    folder.mkdir()
    (folder / systemd.UNIT_NAME).write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", "--man=no", "--generators=no", systemd.UNIT_NAME],
        cwd=folder,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        check=False,
    )


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd)",
)


@needs_systemd_analyze
def test_dry_run_prints_a_unit_that_systemd_accepts(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["service", "install", "--dry-run", "--platform", "linux"]) == 0
    unit = written_file(capsys.readouterr().out, "sfumato.service")
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    result = verify_unit(unit, tmp_path)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("folder", ["Art Programs 100% $HOME", "quote\"s \\ and 'apostrophes'"])
def test_odd_paths_give_a_unit_that_systemd_accepts(tmp_path: Path, folder: str) -> None:
    program = tmp_path / folder / "sfumato"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    unit = systemd.render_unit([str(program)], tmp_path / ODD / "config.toml")
    result = verify_unit(unit, tmp_path)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_exec_start_follows_systemd_quoting(tmp_path: Path) -> None:
    unit = systemd.render_unit(["/opt/my apps/sfumato"], Path('/p/100% $HOME/a"b\\c.toml'))
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start == ('ExecStart="/opt/my apps/sfumato" run --config "/p/100%% $$HOME/a\\"b\\\\c.toml"')
    # systemd takes the executable's path literally apart from specifiers, so `$` stays single.
    assert systemd.quote_word("/opt/$x/100%/sfumato", executable=True) == '"/opt/$x/100%%/sfumato"'
    assert systemd.quote_word("line\nbreak") == '"line\\x0abreak"'


def test_a_program_path_systemd_refuses_is_started_through_env() -> None:
    words = systemd.exec_words(['/home/o"neil/bin/sfumato'])
    assert words == ['"/usr/bin/env"', '"/home/o\\"neil/bin/sfumato"']
    with pytest.raises(ServiceError):
        systemd.exec_words(["relative/sfumato"])


def test_unit_has_the_service_settings_the_issue_asks_for() -> None:
    unit = systemd.render_unit(["/usr/bin/sfumato"], Path("/c.toml")).splitlines()
    for setting in (
        "Type=notify",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Nice=10",
        "CPUSchedulingPolicy=batch",
        "IOSchedulingClass=idle",
        "NoNewPrivileges=yes",
        "WantedBy=default.target",
    ):
        assert setting in unit
    # Nothing may hide or freeze the user's files: the folders can be anywhere they can write.
    assert not [line for line in unit if line.startswith(("ProtectHome=", "ProtectSystem="))]


def test_plist_parses_and_runs_sfumato_in_the_background(tmp_path: Path) -> None:
    program = ["/Users/me/my apps/sfumato"]
    config = tmp_path / ODD / "config.toml"
    log_file = tmp_path / ODD / "sfumato.log"
    plist = plistlib.loads(launchd.render_plist(program, config, log_file))
    assert plist["Label"] == launchd.LABEL
    assert plist["ProgramArguments"] == [*program, "run", "--config", str(config)]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart after a crash only
    assert plist["ProcessType"] == "Background"
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == str(log_file)


def test_macos_dry_run_logs_to_the_library_logs_folder(
    home: Path, no_subprocess: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["service", "install", "--dry-run", "--platform", "macos"]) == 0
    out = capsys.readouterr().out
    plist = plistlib.loads(written_file(out, f"{launchd.LABEL}.plist").encode())
    assert plist["StandardOutPath"] == str(home / "Library/Logs/sfumato/sfumato.log")
    assert f"launchctl bootstrap gui/{os.getuid()} " in out


@pytest.mark.parametrize("platform", ["linux", "macos"])
def test_dry_run_changes_nothing(
    home: Path, no_subprocess: None, platform: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = home / "config.toml"
    config.write_text("")
    assert cli.main(["service", "install", "--dry-run", "--platform", platform]) == 0
    assert "would run: " in capsys.readouterr().out
    assert sorted(home.rglob("*")) == [config]


def test_install_and_uninstall_on_linux(
    home: Path, on_linux: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSystem()
    config = home / "pictures config.toml"
    config.write_text("")
    assert command.install_service("linux", str(config), dry_run=False, runner=fake) == 0
    unit = home / ".config/systemd/user/sfumato.service"
    assert f'--config "{config}"' in unit.read_text()
    systemctl = ("systemctl", "--user")
    assert fake.calls[1:] == [
        (*systemctl, "daemon-reload"),
        (*systemctl, "enable", "sfumato.service"),
        (*systemctl, "restart", "sfumato.service"),
    ]
    assert "journalctl --user -u sfumato" in capsys.readouterr().out

    fake.calls.clear()
    assert command.uninstall_service("linux", dry_run=False, runner=fake) == 0
    assert not unit.exists()
    assert (*systemctl, "disable", "--now", "sfumato.service") in fake.calls
    assert fake.calls.index((*systemctl, "daemon-reload")) > 1
    assert config.exists()  # the user's own files stay


def test_first_install_creates_the_default_config(
    home: Path, on_linux: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSystem()
    assert command.install_service("linux", None, dry_run=False, runner=fake) == 0
    config = home / ".config/sfumato/config.toml"
    assert config.is_file()  # `sfumato run --config` would refuse a missing file
    unit = (home / ".config/systemd/user/sfumato.service").read_text()
    assert f'--config "{config}"' in unit
    assert str(config) in capsys.readouterr().out


def test_a_missing_explicit_config_stops_the_install(
    home: Path, on_linux: None, no_subprocess: None, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = home / "typo.toml"
    assert cli.main(["service", "install", "--platform", "linux", "--config", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert list(home.rglob("*")) == []


def test_install_and_uninstall_on_macos(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "current_platform", lambda: "macos")
    fake = FakeSystem({"bootout": (113, "", "Could not find service")})  # not loaded yet: fine
    config = home / "config.toml"
    config.write_text("")
    assert command.install_service("macos", str(config), dry_run=False, runner=fake) == 0
    plist_file = home / "Library/LaunchAgents/org.sfumato.daemon.plist"
    assert plistlib.loads(plist_file.read_bytes())["Label"] == launchd.LABEL
    assert (home / "Library/Logs/sfumato").is_dir()
    assert fake.calls[-1] == ("launchctl", "bootstrap", f"gui/{os.getuid()}", str(plist_file))

    assert command.uninstall_service("macos", dry_run=False, runner=fake) == 0
    assert not plist_file.exists()
    assert fake.calls[-1] == ("launchctl", "bootout", f"gui/{os.getuid()}/{launchd.LABEL}")


def test_no_user_manager_is_one_sentence_and_writes_nothing(
    home: Path, on_linux: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "Failed to connect to bus: No medium\n")

    monkeypatch.setattr(subprocess, "run", unreachable)
    assert cli.main(["service", "install", "--platform", "linux"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Failed to connect to bus" in err
    assert "loginctl enable-linger" in err
    assert list(home.rglob("*")) == []
    assert cli.main(["service", "status", "--platform", "linux"]) == 1
    assert "user manager" in capsys.readouterr().err


def test_installing_for_another_platform_needs_dry_run(
    home: Path, on_linux: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["service", "install", "--platform", "macos"]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_status_reports_the_daemon_status_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = {"is-active": (0, "active\n", ""), "StatusText": (0, "cloaking cat.png\n", "")}
    assert command.service_status("linux", runner=FakeSystem(answers)) == 0
    assert capsys.readouterr().out == "sfumato is running: cloaking cat.png\n"
    fake = FakeSystem({"is-active": (3, "inactive\n", "")})
    assert command.service_status("linux", runner=fake) == command.NOT_RUNNING
    running, sentence = systemd.status(fake)
    assert not running and "not installed" in sentence


def test_launchd_status_reads_the_state(home: Path) -> None:
    printed = f"gui/501/{launchd.LABEL} = {{\n\tactive count = 1\n\tstate = running\n}}\n"
    assert launchd.status(FakeSystem({"print": (0, printed, "")}), Path("/l.log"))[0] is True
    stopped = printed.replace("running", "not running")
    running, sentence = launchd.status(FakeSystem({"print": (0, stopped, "")}), Path("/l.log"))
    assert not running and "/l.log" in sentence
    assert launchd.status(FakeSystem({"print": (113, "", "")}), Path("/l.log"))[0] is False


def test_the_service_starts_the_sfumato_being_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "bin dir" / "sfumato"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "argv", [str(script), "service", "install"])
    assert context.sfumato_program() == [str(script)]
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "__main__.py")])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert context.sfumato_program() == [os.path.abspath(sys.executable), "-m", "sfumato"]


def test_relative_config_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert context.absolute_config_path("my config.toml", "linux") == tmp_path / "my config.toml"
