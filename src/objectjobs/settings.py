"""One settings object (SPEC §5.1): an optional TOML file overridden by OBJECTJOBS_* env.

Built once at start-up by :func:`load_settings` and passed down; nothing reads the
environment after that.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from objectjobs.errors import ConfigurationError


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("server.tls_cert and server.tls_key must be given together")
        return self


class DatabaseSettings(BaseModel):
    url: str | None = None  # default: sqlite:///<data_dir>/objectjobs.db
    pool_size: int = Field(10, ge=1)


class S3EndpointSettings(BaseModel):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    addressing_style: Literal["path", "virtual"] = "path"
    # objects larger than this are copied with multipart part-copy (S3's own limit is 5 GiB)
    single_copy_limit: int = Field(5 * 1024**3, ge=5 * 1024**2)
    multipart_chunk_size: int = Field(16 * 1024**2, ge=5 * 1024**2)
    max_connections: int = Field(64, ge=1)


class StorageSettings(S3EndpointSettings):
    kind: Literal["local", "s3"] = "local"
    root: Path | None = None  # local: default <data_dir>/buckets
    # local: batches of small-file copies run at once per worker process (a thread each)
    copy_threads: int = Field(1, ge=1, le=64)


class NotifyTargetSettings(BaseModel):
    kind: Literal["webhook", "amqp"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    hmac_secret: SecretStr | None = None
    exchange: str = ""
    routing_key: str = ""
    timeout_s: float = Field(10.0, gt=0)


class NotifySettings(BaseModel):
    targets: dict[str, NotifyTargetSettings] = Field(default_factory=dict)


class ExternalIssuerSettings(BaseModel):
    issuer: str
    jwks_url: str
    audience: str | None = None
    roles_claim: str = "roles"


class AuthSettings(BaseModel):
    admin_user: str = "admin"
    admin_password: SecretStr | None = None
    token_lifetime_s: int = Field(300, ge=10)
    refresh_lifetime_s: int = Field(1800, ge=10)
    csrf_lifetime_s: int = Field(3600, ge=10)
    # default: generated once and kept in the job store, so every node shares it
    secret_key: SecretStr | None = None
    realm: str = "vsp-object"
    external: ExternalIssuerSettings | None = None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class WorkerSettings(BaseModel):
    enabled: bool = True
    # worker processes on this node, the serving one included: Python runs one thread of
    # Python at a time, so one process per core is what keeps every core working
    processes: int = Field(default_factory=_cores, ge=1, le=256)
    concurrency: int = Field(16, ge=1, le=1024)
    lease_s: float = Field(30.0, gt=0)
    heartbeat_s: float = Field(5.0, gt=0)
    max_memory_mb: int = Field(512, ge=16)
    poll_s: float = Field(0.5, gt=0)
    partition_objects: int = Field(10_000, ge=1)
    # EXAMINING a job of more than one partition is cut into up to this many key ranges,
    # listed by as many tasks at once (on any worker); 1 lists every job in one task
    examine_ranges: int = Field(8, ge=1, le=256)
    retries: int = Field(5, ge=0)
    retry_base_s: float = Field(0.2, gt=0)

    @model_validator(mode="after")
    def _heartbeat_below_lease(self) -> WorkerSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError("worker.heartbeat_s must be smaller than worker.lease_s")
        return self


class LogSettings(BaseModel):
    level: str = "INFO"
    json_format: bool = Field(False, alias="json")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OBJECTJOBS_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    data_dir: Path = Path("./objectjobs-data")
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    targets: dict[str, S3EndpointSettings] = Field(default_factory=dict)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # toml_file is set per call by load_settings (a subclass); None reads no file
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'objectjobs.db').resolve()}"

    @property
    def storage_root(self) -> Path:
        return (self.storage.root or self.data_dir / "buckets").resolve()


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings: keyword overrides > environment > TOML file > defaults.

    ``config_file`` defaults to ``$OBJECTJOBS_CONFIG``. Raises ConfigurationError listing
    every problem when the file is missing or the result is invalid.
    """
    path = config_file or os.environ.get("OBJECTJOBS_CONFIG")
    if path is not None and not Path(path).is_file():
        raise ConfigurationError(f"configuration file not found: {path}")

    class _Loaded(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

    # OBJECTJOBS_CONFIG names the file; it is not a setting, and extra="forbid" would refuse it
    config_env = os.environ.pop("OBJECTJOBS_CONFIG", None)
    try:
        loaded = _Loaded(**{k: v for k, v in overrides.items() if v is not None})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"configuration file {path} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from exc
    finally:
        if config_env is not None:
            os.environ["OBJECTJOBS_CONFIG"] = config_env
    return loaded
