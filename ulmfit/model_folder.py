"""A model folder read back and checked, or prepared for a run (file names: :mod:`ulmfit.artefacts`).

Reading: :func:`load_weights` is the one way weights come off disk (``torch.load`` with
``weights_only=True``, checked by loading them into the model they are for), and the checks that
a folder fits what it is used with: the same tokenizer, the same vocabulary, the direction, the
classes. Every refusal is a UlmfitError naming the file at fault.

Writing: :func:`prepare_out` decides whether an output folder takes a new run, resumes one or
is refused, and writes what a run needs before its first checkpoint. It lives here rather than
with the stages because the answer depends only on which files the folder holds.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .artefacts import CLASSES, CONFIG, LAST_CHECKPOINT, SPM_MODEL, TOKENIZER, VOCAB
from .config import config_to_dict, load_config, save_config
from .errors import UlmfitError
from .files import atomic_path, copy_file, read_json
from .outdir import unknown_files
from .text.corpus import load_classes
from .text.vocab import Vocab

# What prepare_out and the stage write before the first checkpoint: a folder holding only these
# (and its config.json) is a run that stopped before it saved any training, and starts again.
SETUP_FILES = frozenset({CONFIG, VOCAB, TOKENIZER, SPM_MODEL, CLASSES})


def require(path: Path) -> Path:
    """``path`` itself, or a UlmfitError naming it when it does not exist."""
    if not path.exists():
        raise UlmfitError(f"{path}: file not found")
    return path


# -- weights ------------------------------------------------------------------------------------

def load_weights(path: Path, build: Callable[[], nn.Module], fits: str) -> dict[str, Tensor]:
    """The state_dict in ``path``, checked by loading it into the module ``build`` makes.

    Building happens inside the check, so a file that unpickles to something else, has other
    shapes or keys, or a config that cannot build the model are all one error: ``path`` does not
    match ``fits`` (e.g. "the architecture in <folder>/config.json").
    """
    require(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        build().load_state_dict(state)
    except Exception as e:  # unpickling or shape errors: the file does not fit the config
        raise UlmfitError(f"{path}: does not match {fits} ({first_line(e)})") from None
    return state


def save_weights(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# -- does a folder fit ----------------------------------------------------------------------------

def check_vocab_size(folder: Path, vocab_size: int, n_tokens: int) -> None:
    """Refuse a folder whose vocab.json (``n_tokens``) is not the size its config's model has."""
    if n_tokens != vocab_size:
        raise UlmfitError(f"{folder / VOCAB}: {n_tokens} tokens, but {folder / CONFIG} says "
                          f"vocab_size={vocab_size}")


def check_direction(folder: Path, backwards: bool, wanted: bool, user: str, source: str) -> None:
    """Refuse a language model that reads the other way than the ``user`` built on it (a backward
    model's weights mean nothing to a forward reader)."""
    if backwards != wanted:
        want, have = ("backward", "forward") if wanted else ("forward", "backward")
        raise UlmfitError(f"{folder}: is a {have} language model; a {want} {user} needs a {want} {source}")


def check_same_tokenizer(pretrained: Path, data: Path) -> None:
    """Refuse target data tokenized differently from the pretrained model's data.

    Token strings only mean the same thing under the same tokenizer: the kind, language and
    rules must agree, and for SentencePiece the very same ``spm.model``.
    """
    pre, tgt = read_json(require(pretrained / TOKENIZER)), read_json(require(data / TOKENIZER))
    for key in ("kind", "lang", "pre_rules", "post_rules"):
        if pre.get(key) != tgt.get(key):
            raise UlmfitError(f"{data / TOKENIZER}: {key} is {tgt.get(key)!r} but the model at "
                              f"{pretrained} used {pre.get(key)!r}; tokenize the target data the same way")
    if (pretrained / SPM_MODEL).exists() or (data / SPM_MODEL).exists():
        same = ((pretrained / SPM_MODEL).exists() and (data / SPM_MODEL).exists()
                and (pretrained / SPM_MODEL).read_bytes() == (data / SPM_MODEL).read_bytes())
        if not same:
            raise UlmfitError(f"{data / SPM_MODEL}: not the SentencePiece model of {pretrained}; tokenize the "
                              f"target data with the pretrained model's SentencePiece model")


def check_same_vocab(model_dir: Path, data_dir: Path, hint: str) -> Vocab:
    """The data's vocabulary, refused unless it is the model folder's, id for id."""
    model_vocab, data_vocab = Vocab.load(require(model_dir / VOCAB)), Vocab.load(require(data_dir / VOCAB))
    if model_vocab.itos != data_vocab.itos:
        first = next((i for i, (a, b) in enumerate(zip(model_vocab.itos, data_vocab.itos)) if a != b),
                     min(len(model_vocab), len(data_vocab)))
        raise UlmfitError(f"{data_dir / VOCAB}: not the vocabulary of {model_dir / VOCAB} ({len(data_vocab)} vs "
                          f"{len(model_vocab)} tokens, first difference at id {first}); {hint}")
    return data_vocab


def check_same_classes(folder: Path, classes: list[str], reference: Path, reference_classes: list[str],
                       whose: str = "") -> None:
    """Refuse ``folder``'s classes unless they are ``reference``'s, in the same order (label ids
    index them); ``whose`` says what the reference is in the message ("the model's ")."""
    if list(classes) != list(reference_classes):
        raise UlmfitError(f"{folder / CLASSES}: classes {classes} differ from {whose}{reference / CLASSES} "
                          f"{reference_classes}")


def check_data_fits(model_dir: Path, classes: list[str], data_dir: Path) -> None:
    """Refuse data tokenized differently from the model's, or with other classes."""
    check_same_tokenizer(model_dir, data_dir)
    check_same_vocab(model_dir, data_dir, hint=f"tokenize the data with --vocab_from {model_dir}")
    data_classes = load_classes(data_dir)
    if data_classes is not None:
        check_same_classes(data_dir, data_classes, model_dir, classes, whose="the model's ")


# -- a folder for a run ---------------------------------------------------------------------------

def copy_tokenizer_files(src: Path, dst: Path) -> None:
    """Copy ``vocab.json``, ``tokenizer.json`` (and ``spm.model`` if any) from ``src`` to ``dst``."""
    for name in (VOCAB, TOKENIZER, SPM_MODEL):
        if (src / name).exists():
            copy_file(src / name, dst / name)
        elif name != SPM_MODEL:
            raise UlmfitError(f"{src / name}: file not found")


def prepare_out(out_dir: Path, cfg, data_dir: Path, resume: bool) -> bool:
    """Check ``out_dir`` fits a new run or resuming, then write the config and vocabulary files.

    Returns whether the run continues from the checkpoint. Resuming needs the saved config to
    equal ``cfg`` (a dataclass) field for field. A folder of a run that stopped before its first
    checkpoint starts again, with or without ``resume``; any other non-empty folder is refused.
    """
    if resume and (out_dir / LAST_CHECKPOINT).exists():
        saved = load_config(type(cfg), require(out_dir / CONFIG))
        differ = config_diff(config_to_dict(saved), config_to_dict(cfg))
        if differ:
            raise UlmfitError(f"{out_dir / CONFIG}: resuming needs the same options; these differ "
                              f"(saved -> now): {', '.join(differ)}")
        return True
    if resume and not (out_dir / CONFIG).exists():
        raise UlmfitError(f"{out_dir / LAST_CHECKPOINT}: file not found; there is no run to resume in {out_dir}")
    if (out_dir / CONFIG).exists() and not unknown_files(out_dir, SETUP_FILES):
        print(f"{out_dir}: the run in it stopped before its first checkpoint; starting it again", file=sys.stderr)
    elif (out_dir / LAST_CHECKPOINT).exists():
        raise UlmfitError(f"{out_dir}: already exists and is not empty (it holds a run); pass --resume to continue it (same options), "
                          f"or choose another --out")
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise UlmfitError(f"{out_dir}: already exists and is not empty; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / CONFIG)
    copy_tokenizer_files(data_dir, out_dir)
    return False


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for every (nested) field that differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out
