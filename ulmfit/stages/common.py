"""Helpers shared by the training stages: model-folder file names, options from presets, output
folders, device choice and weight files."""
from __future__ import annotations

import resource
import shutil
import sys
from pathlib import Path

import torch

from ..config import config_to_dict, load_config, save_config
from ..errors import UlmfitError
from ..files import atomic_path
from ..training import LAST_CHECKPOINT

CONFIG = "config.json"
MODEL = "model.pt"
ENCODER = "encoder.pt"
METRICS = "metrics.json"
VOCAB = "vocab.json"
TOKENIZER = "tokenizer.json"
SPM_MODEL = "spm.model"


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is cuda when available, else cpu; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def preset_options(presets: dict[str, dict], preset: str, *overrides: dict, **given) -> dict:
    """Training fields: the preset's, then each override dict, then the arguments that were given."""
    if preset not in presets:
        raise UlmfitError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    fields = dict(presets[preset])
    for extra in overrides:
        fields.update(extra)
    fields.update(given_options(**given))
    return fields


def given_options(**kwargs) -> dict:
    """The keyword arguments that were actually passed (not None); False flags count as given."""
    return {k: v for k, v in kwargs.items() if v is not None}


def require(path: Path) -> Path:
    """``path`` itself, or a UlmfitError naming it when it does not exist."""
    if not path.exists():
        raise UlmfitError(f"{path}: file not found")
    return path


def save_weights(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (children excluded): what a run needed."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    """Copy ``vocab.json``, ``tokenizer.json`` (and ``spm.model`` if any) from ``src`` to ``dst``."""
    for name in (VOCAB, TOKENIZER, SPM_MODEL):
        if (src / name).exists():
            with atomic_path(dst / name) as tmp:
                shutil.copyfile(src / name, tmp)
        elif name != SPM_MODEL:
            raise UlmfitError(f"{src / name}: file not found")


def prepare_out(out_dir: Path, cfg, data_dir: Path, resume: bool) -> None:
    """Check ``out_dir`` fits a new run or resuming, then write the config and vocabulary files.

    Resuming needs the saved config to equal ``cfg`` (a dataclass) field for field.
    """
    if resume:
        require(out_dir / LAST_CHECKPOINT)
        saved = load_config(type(cfg), require(out_dir / CONFIG))
        differ = config_diff(config_to_dict(saved), config_to_dict(cfg))
        if differ:
            raise UlmfitError(f"{out_dir / CONFIG}: resuming needs the same options; these differ "
                              f"(saved -> now): {', '.join(differ)}")
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UlmfitError(f"{out_dir}: already exists and is not empty; pass --resume to continue the run "
                          f"in it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / CONFIG)
    copy_tokenizer_files(data_dir, out_dir)


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
