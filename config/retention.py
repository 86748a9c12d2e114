"""The retention policy (`config/retention.toml`): every dataset with its retention and action, as data."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.errors import ConfigError

DEFAULT_POLICY = Path(__file__).with_name("retention.toml")


class Dataset(BaseModel):
    """One dataset: how long it is kept online, what happens then, and who enforces it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_.\-/*]+$")
    action: Literal["delete", "archive", "anonymise", "rollover", "keep"]
    days: int = Field(gt=0)
    archive_after_days: int | None = Field(None, gt=0)
    archive_days: int | None = Field(None, gt=0)
    rollover_days: int | None = Field(None, gt=0)
    enforced_by: Literal["retention", "server", "none"]
    why: str = Field(min_length=10)

    @model_validator(mode="after")
    def _coherent(self) -> Dataset:
        if self.action == "archive" and (self.archive_days is None or self.archive_after_days is None):
            raise ValueError(f"{self.name}: an archive needs archive_after_days and archive_days")
        if self.action == "rollover" and self.rollover_days is None:
            raise ValueError(f"{self.name}: a rollover needs rollover_days")
        if self.action == "keep" and self.enforced_by == "retention":
            raise ValueError(f"{self.name}: nothing to enforce for 'keep'")
        return self


class RetentionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: list[Dataset]

    @model_validator(mode="after")
    def _unique(self) -> RetentionPolicy:
        names = [d.name for d in self.dataset]
        if len(names) != len(set(names)):
            raise ValueError("dataset names must be unique")
        return self

    def get(self, name: str) -> Dataset | None:
        return next((d for d in self.dataset if d.name == name), None)


def load_policy(path: str | Path | None = None) -> RetentionPolicy:
    """The policy file (KREDETE_RETENTION_POLICY, else config/retention.toml); ConfigError when it is wrong."""
    p = Path(path) if path else DEFAULT_POLICY
    try:
        return RetentionPolicy.model_validate(tomllib.loads(p.read_text()))
    except OSError as exc:
        raise ConfigError(f"retention policy {p} cannot be read ({type(exc).__name__})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"retention policy {p} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"retention policy {p}: {where}: {first['msg']}") from exc
