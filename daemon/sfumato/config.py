"""The daemon's configuration: one pydantic model, read from TOML and ``SFUMATO_...`` variables.

Everything is validated once, here, at the edge: the rest of the daemon can trust every value.
A bad file gives one line per problem (file, key, why), so a typo never silently does something
else. Environment variables beat the file (``SFUMATO_DEFAULTS__INTENSITY=high``,
``SFUMATO_DAEMON__WORKERS=2``), so a service unit can tweak a setting without editing it.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Annotated, Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import platformdirs
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from sfumato.errors import ConfigError, SfumatoError
from sfumato.options import (
    BUILTIN_STYLES,
    DEFAULT_CHECK,
    DEFAULT_ENCODERS,
    DEFAULT_INTENSITY,
    DEFAULT_QUALITY,
    DEVICES,
    METADATA_POLICIES,
    CheckRequest,
    CloakRequest,
    parse_intensity,
    parse_quality,
)
from sfumato.specs import parse_encoder, parse_poison

APP_NAME = "sfumato"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _optional(parse):
    """Let ``None`` (key not set in a folder) through a parser, so folders inherit the defaults."""

    def validate(value: Any) -> Any:
        return None if value is None else parse(value)

    return validate


def _choice(name: str, choices: tuple[str, ...]):
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return text

    return parse


# The config file being loaded (set by load_config): its TOML source, and the folder that
# relative paths in it are relative to, since the service runs with an arbitrary working directory.
_TOML_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml", default=None)

# Style values that are never a folder, even where a folder of that name exists (as in parse_style).
_STYLE_WORDS = frozenset(("auto", "none", *BUILTIN_STYLES))


def _local(text: str) -> Path:
    """A path from the config: ``~`` expanded, relative to the config file's folder if one is loading."""
    path = Path(text).expanduser()
    toml = _TOML_FILE.get()
    return path if toml is None or path.is_absolute() else toml.parent / path


def _style(value: Any) -> str:
    """A style naming a folder of reference images (it has a path separator, or such a folder is
    next to the config file) becomes that folder's path; any other style is kept as it is."""
    text = str(value).strip()
    if not text:
        raise ValueError("style must not be empty: use auto, none, a style name or a folder")
    if _TOML_FILE.get() is None or text.lower() in _STYLE_WORDS:
        return text
    folder = _local(text)
    looks_like_path = any(sep in text for sep in ("/", "\\"))
    return str(folder) if looks_like_path or os.path.isdir(folder) else text


def _encoder(spec: Any) -> Any:
    """``scheme:name@PATH``: a local weights file or folder, resolved like any other path; an
    unknown kind or model family is rejected here, not when the daemon starts."""
    if not isinstance(spec, str):
        return spec  # not text: the str type rejects it
    try:
        parse_encoder(spec)
    except SfumatoError as exc:
        raise ValueError(str(exc)) from None
    head, at, where = spec.strip().partition("@")
    return f"{head}@{_local(where.strip())}" if at and where.strip() else spec.strip()


def _encoders(value: Any) -> list[str]:
    specs = [value] if isinstance(value, str) else value
    if not isinstance(specs, list | tuple) or not specs:
        raise ValueError('encoders must be a non-empty list such as ["effnet-lite:0"]')
    for spec in specs:
        if not isinstance(spec, str) or ":" not in spec:
            raise ValueError(f'each encoder is "scheme:name" such as "effnet-lite:0", not {spec!r}')
    return [_encoder(spec) for spec in specs]


def _path(value: Any) -> Path:
    if isinstance(value, str) and not value.strip():
        raise ValueError("path must not be empty")
    return _local(str(value))


Style = Annotated[str | None, BeforeValidator(_optional(_style))]
Intensity = Annotated[str | float | None, BeforeValidator(_optional(parse_intensity))]
Quality = Annotated[str | None, BeforeValidator(_optional(parse_quality))]
Device = Annotated[str | None, BeforeValidator(_optional(_choice("device", DEVICES)))]
Metadata = Annotated[str | None, BeforeValidator(_optional(_choice("metadata", METADATA_POLICIES)))]
Encoders = Annotated[list[str] | None, BeforeValidator(_optional(_encoders))]
EncoderSpec = Annotated[str | None, BeforeValidator(_optional(_encoder))]
LogLevel = Annotated[str, BeforeValidator(_choice("log_level", LOG_LEVELS))]
PathValue = Annotated[Path, BeforeValidator(_path)]


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt setting must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class CheckSettings(_Strict):
    """Whether to verify each cloak with an encoder left out of the search."""

    enabled: bool | None = None
    encoder: EncoderSpec = None
    threshold: Annotated[float | None, Field(ge=0, le=1)] = None

    def request(self) -> CheckRequest:
        return CheckRequest(enabled=self.enabled, encoder=self.encoder, threshold=self.threshold)


class PoisonSettings(_Strict):
    """Per-folder poisoning: ``concept`` shown to a model as ``target``; ``auto`` lets the engine
    choose."""

    enabled: bool = False
    concept: str = "auto"
    target: str = "auto"
    anchors: PathValue | None = None  # optional folder of images of the target concept

    @model_validator(mode="after")
    def _parses(self) -> PoisonSettings:
        try:
            parse_poison(f"{self.concept}:{self.target}")
        except SfumatoError as exc:
            raise ValueError(str(exc)) from None
        return self


class _CloakFields(_Strict):
    """Settings a folder may override; ``None`` means "as in [defaults]"."""

    style: Style = None
    intensity: Intensity = None
    quality: Quality = None
    encoders: Encoders = None
    device: Device = None
    metadata: Metadata = None
    seed: int | None = None
    threads: Annotated[int | None, Field(ge=1)] = None
    steps: Annotated[int | None, Field(ge=1)] = None
    skip_unavailable_encoders: bool | None = None
    check: CheckSettings | None = None


class Defaults(_CloakFields):
    """``[defaults]``: how every folder cloaks unless it says otherwise."""

    style: Style = "auto"
    intensity: Intensity = DEFAULT_INTENSITY
    quality: Quality = DEFAULT_QUALITY
    encoders: Encoders = Field(default_factory=lambda: list(DEFAULT_ENCODERS))
    device: Device = "auto"
    metadata: Metadata = "strip"
    seed: int = 0
    skip_unavailable_encoders: bool = True
    check: CheckSettings = Field(
        default_factory=lambda: CheckSettings(
            enabled=DEFAULT_CHECK.enabled, encoder=DEFAULT_CHECK.encoder, threshold=DEFAULT_CHECK.threshold
        )
    )


class FolderSettings(_CloakFields):
    """One ``[[folders]]`` entry: where artwork arrives and where each result goes."""

    outbox: PathValue
    ready: PathValue
    originals: PathValue
    failed: PathValue
    poison: PoisonSettings = Field(default_factory=PoisonSettings)

    @model_validator(mode="after")
    def _distinct_folders(self) -> FolderSettings:
        roles = {"outbox": self.outbox, "ready": self.ready}
        roles.update(originals=self.originals, failed=self.failed)
        seen: dict[Path, str] = {}
        for role, path in roles.items():
            if path in seen:
                raise ValueError(f"{role} and {seen[path]} must be different folders ({path})")
            seen[path] = role
        return self

    @property
    def key(self) -> str:
        """Stable identity of the folder in the ledger: its outbox's absolute path."""
        return str(self.outbox.absolute())

    @property
    def label(self) -> str:
        return self.outbox.name or str(self.outbox)


class DaemonSettings(_Strict):
    """``[daemon]``: how the service runs, independent of how images are cloaked."""

    state_dir: PathValue = Field(default_factory=lambda: platformdirs.user_data_path(APP_NAME))
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    nice: Annotated[int, Field(ge=0, le=19)] = 10
    log_level: LogLevel = "info"
    polling: bool = False
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    settle_seconds: Annotated[float, Field(ge=0, le=600)] = 1.0
    truncated_wait: Annotated[float, Field(ge=0, le=86400)] = 60.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    retry_backoff: Annotated[float, Field(ge=0)] = 30.0
    max_file_mb: Annotated[float, Field(gt=0)] = 200.0


class Config(BaseSettings):
    """The whole configuration; build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix="SFUMATO_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    defaults: Defaults = Field(default_factory=Defaults)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    folders: list[FolderSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_TOML_FILE.get())
        return (init_settings, env_settings, toml)

    @model_validator(mode="after")
    def _folders_do_not_overlap(self) -> Config:
        outboxes: dict[Path, int] = {}
        for index, folder in enumerate(self.folders):
            if folder.outbox in outboxes:
                raise ValueError(
                    f"folders[{index}] has the same outbox as folders[{outboxes[folder.outbox]}] "
                    f"({folder.outbox})"
                )
            outboxes[folder.outbox] = index
        for index, folder in enumerate(self.folders):
            for role in ("ready", "originals", "failed"):
                other = outboxes.get(getattr(folder, role))
                if other is not None:
                    raise ValueError(
                        f"folders[{index}].{role} is the outbox of folders[{other}]: results "
                        "would be cloaked again"
                    )
        for index, folder in enumerate(self.folders):
            if self.folder_style(folder).lower() == "none" and not folder.poison.enabled:
                raise ValueError(
                    f'folders[{index}] has style "none" without [folders.poison] enabled: '
                    "its images would not change at all"
                )
        return self

    def options_for(self, folder: FolderSettings, style: str | None = None) -> CloakRequest:
        """The folder's settings over ``[defaults]``; ``style`` replaces an ``auto`` style with
        the target already chosen for that folder, so all its images share one target."""
        d = self.defaults

        def pick(name: str) -> Any:
            value = getattr(folder, name)
            return getattr(d, name) if value is None else value

        check = DEFAULT_CHECK
        for layer in (d.check, folder.check):
            if layer is not None:
                check = layer.request().over(check)
        chosen_style = pick("style")
        if style is not None and chosen_style == "auto":
            chosen_style = style
        poison = folder.poison
        return CloakRequest(
            style=chosen_style,
            intensity=pick("intensity"),
            quality=pick("quality"),
            encoders=tuple(pick("encoders")),
            device=pick("device"),
            seed=pick("seed"),
            metadata=pick("metadata"),
            threads=pick("threads"),
            steps=pick("steps"),
            poison=parse_poison(f"{poison.concept}:{poison.target}") if poison.enabled else None,
            skip_unavailable_encoders=pick("skip_unavailable_encoders"),
            check=check,
            poison_anchors=poison.anchors if poison.enabled else None,
        )

    def folder_style(self, folder: FolderSettings) -> str:
        """The folder's configured style (``auto`` means: choose once, then keep)."""
        return folder.style if folder.style is not None else self.defaults.style


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as ``key: why``, in words a user can act on."""
    where = _location(tuple(p for p in error["loc"] if not str(p).startswith("function-")))
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        message = "unknown key (check the spelling against config.example.toml)"
    elif kind == "missing":
        message = "required key is missing"
    elif kind in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    else:
        value = error.get("input")
        if not isinstance(value, dict | list):
            message = f"{message[:1].lower()}{message[1:]} (got {value!r})"
    return f"{where}: {message}" if where else message


def problems_of(error: ValidationError) -> list[str]:
    return [_problem(e) for e in error.errors(include_url=False)]


def load_config(path: Path | None) -> Config:
    """Read and validate a config file (``None``: built-in defaults and environment only).

    Raises ConfigError whose message has one line per problem: ``<file>: <key>: <why>``.
    """
    where = str(path) if path is not None else "environment"
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{path}: config file not found (create one with: sfumato config init)")
    token = _TOML_FILE.set(Path(path).absolute() if path is not None else None)
    try:
        config = Config()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{where}: {p}" for p in problems_of(exc))) from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the config file: {exc.strerror}") from None
    finally:
        _TOML_FILE.reset(token)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """The effective config as plain TOML-ready data (paths as text, unset keys left out)."""
    return config.model_dump(mode="json", exclude_none=True)
