"""Typed stage configs serialized as JSON next to the artifacts they produced."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Type, TypeVar

from .errors import UlmfitError
from .files import read_json, write_json
from .validate import check_fields

C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: Type[C], data: dict, source: str = "config") -> C:
    """Build ``cls`` from a dict, rejecting keys the dataclass does not know, missing ones, and
    values of the wrong type or out of range (see ``ulmfit.validate.check_fields``)."""
    if not isinstance(data, dict):
        raise UlmfitError(f"{source}: expected a JSON object of {cls.__name__} fields, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UlmfitError(f"{source}: unknown {cls.__name__} fields {unknown}")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise UlmfitError(f"{source}: missing {cls.__name__} fields {missing}")
    check_fields(cls, data, source)
    return cls(**data)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    write_json(path, config_to_dict(cfg))


def load_config(cls: Type[C], path: str | os.PathLike) -> C:
    return config_from_dict(cls, read_json(path), source=str(path))
