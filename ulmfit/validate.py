"""Every command-line option checked before a stage does any work.

All of it is derived from the stage function itself: the flags it accepts and their types come
from its signature and annotations, so a new option is checked without a line here. Only what a
name means and a type cannot say lives in tables keyed by parameter name: value ranges
(``RULES``) and which options name outputs (``OUTPUTS``). The same ranges apply to the fields of a
saved config.json (``check_fields``), so a hand-edited file fails as clearly as a bad flag.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import math
import re
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .errors import UlmfitError
from .text.special import SPECIAL_TOKENS

TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")
HELP_FLAGS = ("--help", "-h")
FIRE_SEPARATOR = "--"  # python-fire's own flags (--trace, --interactive) follow it


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (inclusive unless ``low_open``)."""

    low: float
    high: float = math.inf
    low_open: bool = False

    def __call__(self, value: float) -> str | None:
        above = value > self.low if self.low_open else value >= self.low
        if above and value <= self.high:
            return None
        if self.high == math.inf:
            return f"must be {'greater than' if self.low_open else 'at least'} {self.low}, got {value}"
        return f"must be in {'(' if self.low_open else '['}{self.low}, {self.high}], got {value}"


def device_problem(name: str) -> str | None:
    """Why ``name`` is no device of this machine ("auto" always is one)."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        return f"unknown device {name!r}; use auto, cpu or cuda[:N]"
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            return "no CUDA device on this machine; use --device cpu (or auto)"
        if device.index is not None and device.index >= count:
            return f"no CUDA device {device.index}; this machine has {count} (0..{count - 1})"
        return None
    return f"device type {device.type!r} is not supported; use auto, cpu or cuda[:N]"


# What a value must satisfy, by parameter (or config field) name; "stage.name" overrides "name" in
# that stage. Pretraining and classifier training have to train at least a step to produce a model;
# fine-tuning 0 steps is meaningful (the mapped pretrained model).
RULES: dict[str, Callable[[Any], str | None]] = {
    "epochs": Range(0), "pretrain.epochs": Range(1), "train.epochs": Range(1),
    "max_steps": Range(0), "pretrain.max_steps": Range(1), "train.max_steps": Range(1),
    "min_steps": Range(0),
    "bs": Range(1), "bptt": Range(1), "max_len": Range(1), "max_tokens": Range(1), "max_train": Range(1),
    "checkpoint_tokens": Range(0),
    "lr": Range(0, 10, low_open=True), "wd": Range(0, 1), "clip": Range(0, low_open=True),
    "disc_factor": Range(0, low_open=True), "drop_mult": Range(0), "head_dropout": Range(0, 0.99),
    "seed": Range(0, 2**32 - 1), "tta": Range(0), "curve_every_s": Range(0, low_open=True),
    "max_docs": Range(1), "max_vocab": Range(len(SPECIAL_TOKENS)), "min_freq": Range(1),
    "sp_vocab_size": Range(len(SPECIAL_TOKENS) + 1), "sp_sample_sentences": Range(1), "workers": Range(1),
    "device": device_problem,
    "start_lr": Range(0, 10, low_open=True), "end_lr": Range(0, 100, low_open=True), "steps": Range(2),
    "diverge_factor": Range(1, low_open=True),
}

FOLDER, FILE = "folder", "file"
OUTPUTS: dict[str, str] = {"out": FOLDER, "output": FILE}  # options naming what a stage writes


# -- the command line ---------------------------------------------------------------------------

def is_flag(arg: str) -> bool:
    """What python-fire reads as a flag: ``--name``, ``-n`` or ``-name``; ``-1`` is a value."""
    return arg.startswith("--") or re.match(r"^-[a-zA-Z]", arg) is not None


def check_command_line(stages: Mapping[str, Callable], args: list[str]) -> None:
    """Refuse an unknown command, flag or extra argument, or a missing required one, before
    python-fire runs the stage (it reports leftovers only after the stage has run)."""
    if not args or is_flag(args[0]) or any(a in HELP_FLAGS for a in _stage_args(args[1:])):
        return  # python-fire's help and listing
    if args[0] not in stages:
        raise UlmfitError(f"{args[0]}: unknown command{_suggestion(args[0], list(stages), '')}; "
                          f"choose one of {', '.join(stages)}")
    if isinstance(stages[args[0]], Mapping):  # a group of commands (lr_find)
        if len(args) < 2 or is_flag(args[1]):
            raise UlmfitError(f"{args[0]}: name a command after it: {', '.join(stages[args[0]])}")
        check_command_line(stages[args[0]], args[1:])
        return
    bind_command_line(inspect.signature(stages[args[0]]), _stage_args(args[1:]))


def _stage_args(args: list[str]) -> list[str]:
    return args[: args.index(FIRE_SEPARATOR)] if FIRE_SEPARATOR in args else args


def bind_command_line(signature: inspect.Signature, args: list[str]) -> None:
    """Check that ``args`` give every required parameter and nothing else a value, assigned the
    way python-fire assigns them: flags first (``--name value``, ``--name=value``, ``--name``/``--noname`` for booleans, ``-n`` for
    the only parameter starting with n), then the remaining words in parameter order."""
    names = list(signature.parameters)
    given: set[str] = set()
    words: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not is_flag(arg):
            words.append(arg)
            continue
        key, equals, _ = arg.lstrip("-").partition("=")
        takes_no_value = bool(equals) or index == len(args) or is_flag(args[index])
        name = _flag_name(key.replace("-", "_"), names, bool_syntax=not equals and takes_no_value)
        if name in given:
            raise UlmfitError(f"--{name}: given twice")
        given.add(name)
        index += 0 if takes_no_value else 1
    free = [name for name in names if name not in given]
    if len(words) > len(free):
        raise UlmfitError(f"{words[len(free)]}: unexpected argument; every parameter already has a value "
                          f"(a value starting with '-' needs --name=VALUE)")
    given.update(free[: len(words)])
    missing = [n for n in names if n not in given and signature.parameters[n].default is inspect.Parameter.empty]
    if missing:
        raise UlmfitError(f"--{missing[0]}: required")


def _flag_name(key: str, names: list[str], bool_syntax: bool) -> str:
    if key in names:
        return key
    if bool_syntax and key.startswith("no") and key[2:] in names:
        return key[2:]
    if len(key) == 1:
        matching = [name for name in names if name.startswith(key)]
        if len(matching) == 1:
            return matching[0]
        if matching:
            raise UlmfitError(f"-{key}: could mean {', '.join('--' + m for m in matching)}; write the full name")
    raise UlmfitError(f"--{key}: unknown option{_suggestion(key, names, '--')}; "
                      f"valid: {', '.join('--' + n for n in names) or 'none'}")


def _suggestion(word: str, choices: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


# -- values -------------------------------------------------------------------------------------

def checked_arguments(stage: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments python-fire parsed for ``stage``, converted to the annotated types and
    checked against ``RULES`` and ``OUTPUTS``; a UlmfitError names the first bad option."""
    bound = inspect.signature(stage).bind(*args, **kwargs)
    hints = typing.get_type_hints(stage)
    values = {}
    for name, value in bound.arguments.items():
        try:
            values[name] = convert(value, hints.get(name, Any))
        except ValueError as e:
            raise UlmfitError(f"--{name}: {e}") from None
        problem = rule_problem(name, values[name], stage.__name__)
        if problem:
            raise UlmfitError(f"--{name}: {problem}")
    check_outputs(values)
    return values


def rule_problem(name: str, value: Any, scope: str = "") -> str | None:
    """Why ``value`` breaks the rule for ``name`` (``scope.name`` first), or None."""
    rule = RULES.get(f"{scope}.{name}", RULES.get(name))
    return None if rule is None or value is None else rule(value)


def convert(value: Any, hint: Any) -> Any:
    """``value`` as python-fire parsed it (a number, word, tuple...) made into the type ``hint``.

    Booleans accept true/false, yes/no and 1/0 in any case: fire leaves "false" a (truthy)
    string. Whole numbers accept 3 and 3.0 but not 3.5; text accepts numbers ("2020") and
    puts a comma-split word back together.
    """
    if hint is Any:  # an unannotated parameter takes what python-fire parsed
        return value
    members = _union_members(hint)
    if value is None:
        if type(None) in members:
            return None
        raise ValueError("needs a value")
    if value is True and bool not in members:  # a bare --name: fire's boolean syntax
        raise ValueError("needs a value")
    errors = []
    for member in sorted((m for m in members if m is not type(None)), key=lambda m: not _is_instance(value, m)):
        try:
            return _convert_to(value, member)
        except ValueError as e:
            errors.append(str(e))
    raise ValueError(errors[0] if errors else f"unexpected value {value!r}")


def _union_members(hint: Any) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _is_instance(value: Any, member: Any) -> bool:
    origin = typing.get_origin(member) or member
    if origin is typing.Literal:
        return value in typing.get_args(member)
    return isinstance(value, origin) and not (isinstance(value, bool) and origin is not bool)


def _convert_to(value: Any, member: Any) -> Any:
    origin = typing.get_origin(member) or member
    if origin is typing.Literal:
        choices = typing.get_args(member)
        if value not in choices:
            raise ValueError(f"choose one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is bool:
        return _boolean(value)
    if origin is int:
        return _whole_number(value)
    if origin is float:
        return _real_number(value)
    if origin is str:
        return _text(value)
    if origin in (collections.abc.Sequence, list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a comma-separated list, got {value!r}")
        return [_text(item) for item in value]
    raise ValueError(f"cannot check a value of type {member}")


def _boolean(value: Any) -> bool:
    word = str(value).strip().lower()
    if isinstance(value, (bool, int, str)) and word in TRUE_WORDS + FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError(f"expected true or false (yes/no, 1/0), got {value!r}")


def _whole_number(value: Any) -> int:
    try:
        number = _real_number(value)
    except ValueError:
        number = math.nan
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(number)


def _real_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return int(value) if isinstance(value, int) else number


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ",".join(str(v) for v in value)  # fire splits "a,b" into a tuple
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


# -- output paths -------------------------------------------------------------------------------

def check_outputs(values: Mapping[str, Any]) -> None:
    """Each output option names a writable place of the right kind that holds no input file."""
    inputs = [Path(v) for name, v in _path_values(values) if name not in OUTPUTS and Path(v).is_file()]
    for name, kind in OUTPUTS.items():
        if values.get(name) is not None:
            problem = output_problem(Path(values[name]), kind, inputs)
            if problem:
                raise UlmfitError(f"--{name}: {problem}")


def _path_values(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item:
                pairs.append((name, item))
    return pairs


def output_problem(path: Path, kind: str, inputs: list[Path]) -> str | None:
    """Why a stage could not (or must not) write the ``kind`` (FILE or FOLDER) at ``path``."""
    if path.exists() and kind == FOLDER and not path.is_dir():
        return f"{path} is a file; give a folder"
    if path.is_dir() and kind == FILE:
        return f"{path} is a folder; give a file name"
    target = path.resolve()
    for source in inputs:
        if source.resolve() == target or target in source.resolve().parents:
            return f"{path} would replace the input {source}; choose another path"
    ancestor = next(p for p in [path, *path.parents] if p.exists() or p == Path(p.anchor))
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so nothing can be written under it"
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as e:
        return f"cannot write in {ancestor} ({e.strerror})"
    return None


# -- saved configs ------------------------------------------------------------------------------

def check_fields(cls: type, data: Mapping[str, Any], source: str) -> None:
    """A config dict (from config.json) of dataclass ``cls``: every field of its annotated type
    (nested dataclasses as dicts) and within ``RULES``."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, hint = data[field.name], hints[field.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            check_fields(hint, value, f"{source}: field {field.name!r}")
        elif not matches(value, hint):
            raise UlmfitError(f"{source}: field {field.name!r} should be {_type_name(hint)}, got {value!r}")
        problem = rule_problem(field.name, value)
        if problem:
            raise UlmfitError(f"{source}: field {field.name!r} {problem}")


def matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits ``hint``: ints are floats too, lists are tuples, dicts dataclasses."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(matches(value, member) for member in typing.get_args(hint))
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return not args or all(matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if not typing.get_args(hint) else str(hint).replace("typing.", "")
