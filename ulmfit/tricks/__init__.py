"""Training tricks as switches: each trick is a small dataclass of its parameters, registered
under a name, that turns into trainer callbacks (see :mod:`ulmfit.training`).

A run names its tricks on the command line, e.g. ``--tricks "fgm(epsilon=0.5),ema"``; the
stage config stores them fully resolved (every parameter, defaults included) as
``{"fgm": {"epsilon": 0.5, ...}, "ema": {"decay": 0.999}}``, so any result reruns from its JSON.
Each trick lives in its own module of this package and registers itself with :func:`trick`.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..errors import UlmfitError
from ..training import Callback

STAGES = ("lm", "classifier")
# tricks of earlier versions that became training options: name -> (the option, the trick's
# parameter that is its value, that parameter's default); their saved configs still load
RETIRED_TRICKS = {"amp": ("precision", "dtype", "bf16"), "accumulate": ("accumulate", "steps", 2)}
_REGISTRY: dict[str, type] = {}


def trick(name: str, stages: Sequence[str] = STAGES) -> Callable[[type], type]:
    """Class decorator: register a dataclass of parameters with a ``callbacks()`` method under
    ``name``, usable in the given training stages ("lm": pretrain/finetune, "classifier": train)."""
    def register(cls: type) -> type:
        if not dataclasses.is_dataclass(cls) or not hasattr(cls, "callbacks"):
            raise TypeError(f"trick {name!r} must be a dataclass with a callbacks() method")
        if name in _REGISTRY:
            raise ValueError(f"trick {name!r} is registered twice")
        cls.trick_name, cls.stages = name, tuple(stages)
        _REGISTRY[name] = cls
        return cls
    return register


def registry() -> dict[str, type]:
    """Every trick by name (importing this package's modules registers them)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items()))


def parse_tricks(spec: str | Sequence[str] | Mapping[str, Mapping[str, Any]] | None,
                 stage: str) -> dict[str, dict[str, Any]]:
    """Resolve a tricks option into ``{name: {parameter: value}}`` with every default filled in.

    ``spec`` is a string like ``"fgm(epsilon=0.5),ema"`` (python-fire passes ``fgm,ema`` as a
    tuple), or an already resolved dict (from a saved config). Unknown tricks or parameters,
    bad values, and tricks that do not apply to ``stage`` are a UlmfitError.
    """
    if not spec:
        return {}
    items = spec.items() if isinstance(spec, Mapping) else _split_calls(spec)
    known = registry()
    resolved: dict[str, dict[str, Any]] = {}
    for name, params in items:
        if name in RETIRED_TRICKS:
            raise UlmfitError(f"{name!r} is no longer a trick; use the option --{RETIRED_TRICKS[name][0]}")
        if name not in known:
            raise UlmfitError(f"unknown trick {name!r}; choose from {', '.join(known)}")
        cls = known[name]
        if stage not in cls.stages:
            raise UlmfitError(f"trick {name!r} applies to the {' and '.join(cls.stages)} stage(s), not {stage}")
        if name in resolved:
            raise UlmfitError(f"trick {name!r} is given twice")
        try:
            resolved[name] = dataclasses.asdict(cls(**params))
        except TypeError as e:
            fields = ", ".join(f.name for f in dataclasses.fields(cls)) or "none"
            raise UlmfitError(f"trick {name!r}: {e} (parameters: {fields})") from None
        except ValueError as e:
            raise UlmfitError(f"trick {name!r}: {e}") from None
    return resolved


def build_callbacks(tricks: Mapping[str, Mapping[str, Any]]) -> list[Callback]:
    """The callbacks of resolved tricks (see :func:`parse_tricks`), in the order given."""
    known = registry()
    return [cb for name, params in tricks.items() for cb in known[name](**params).callbacks()]


def _split_calls(spec: str | Sequence[str]) -> Iterable[tuple[str, dict[str, Any]]]:
    """``"a(x=1),b"`` or ``("a(x=1)", "b")`` -> ``[("a", {"x": 1}), ("b", {})]``."""
    text = spec if isinstance(spec, str) else ",".join(str(s) for s in spec)
    try:
        tree = ast.parse(f"[{text}]", mode="eval").body
    except SyntaxError:
        raise UlmfitError(f"--tricks {text!r}: expected names with optional keyword arguments, "
                          f"e.g. \"fgm(epsilon=0.5),ema\"") from None
    for node in tree.elts:
        if isinstance(node, ast.Name):
            yield node.id, {}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
            try:
                yield node.func.id, {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
            except ValueError:
                raise UlmfitError(f"--tricks {text!r}: parameters of {node.func.id} must be literals") from None
        else:
            raise UlmfitError(f"--tricks {text!r}: cannot read {ast.unparse(node)!r}; write name(param=value, ...)")


def list_tricks() -> dict[str, dict[str, Any]]:
    """Every trick with the stages it applies to, its default parameters and what it does."""
    return {name: {"stages": list(cls.stages), "defaults": dataclasses.asdict(cls()),
                   "about": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""}
            for name, cls in registry().items()}
