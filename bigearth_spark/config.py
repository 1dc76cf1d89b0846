"""Typed configuration: a YAML profile from ``conf/`` (``local``, ``cluster``, or a path),
overridden by command-line flags. Paths are URIs handed to Hadoop's filesystem layer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

CONF_DIR = Path(os.environ.get("BIGEARTH_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))


@dataclass(frozen=True)
class Config:
    """Settings of a run."""

    lake: str = "lake"  # lake root: a path or URI, file:/, dbfs:/, s3a://, abfss://, gs://, hdfs://
    database: str = "bigearthnet"  # catalog database the tables are registered in
    master: str | None = None  # None: spark-submit's --master, or local[*]
    spark_conf: dict[str, str] = field(default_factory=dict)
    profile: str = "default"


def reject_unknown_keys(data: Mapping[str, Any], cls: type, where: str) -> None:
    """Raise ValueError naming the keys of ``data`` that are not fields of the dataclass ``cls``."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")


def normalize_lake(lake: str) -> str:
    """A lake URI: URIs with a scheme (``file:``, ``dbfs:/``, ``s3a://``...: see
    :func:`bigearth_spark.storage.is_uri`) stay as they are, local paths become absolute."""
    from bigearth_spark import storage  # pyarrow: not imported by every command's start

    return lake if storage.is_uri(lake) else str(Path(lake).resolve())


def profile_path(profile: str) -> Path:
    """The YAML file of a profile name (``local`` → ``conf/local.yaml``) or a path."""
    p = Path(profile)
    return p if p.suffix in (".yaml", ".yml") else CONF_DIR / f"{profile}.yaml"


def load_config(profile: str | None = None, **overrides: Any) -> Config:
    """Load a profile (missing profile name → defaults) and apply non-None ``overrides``."""
    data: dict[str, Any] = {}
    if profile:
        path = profile_path(profile)
        if not path.is_file():
            raise FileNotFoundError(f"config profile {profile!r} not found at {path}")
        data = yaml.safe_load(path.read_text()) or {}
        reject_unknown_keys(data, Config, str(path))
        data["spark_conf"] = {str(k): str(v) for k, v in (data.get("spark_conf") or {}).items()}
        data["profile"] = str(path)
    cfg = Config(**data)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
