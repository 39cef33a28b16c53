"""Typed stage configs serialized as JSON next to the artifacts they produced."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Type, TypeVar

from .errors import UlmfitError
from .files import read_json, write_json

C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: Type[C], data: dict, source: str = "config") -> C:
    """Build ``cls`` from a dict, rejecting keys the dataclass does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UlmfitError(f"{source}: unknown {cls.__name__} fields {unknown}")
    return cls(**data)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    write_json(path, config_to_dict(cfg))


def load_config(cls: Type[C], path: str | os.PathLike) -> C:
    return config_from_dict(cls, read_json(path), source=str(path))
