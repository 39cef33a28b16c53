"""Bad invocations of every stage, run through the command line in-process: each must exit 2 with
one ``error:`` line naming the option or file, no traceback, and leave every folder as it was."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import pytest

from conftest import write_tokenized
from ulmfit import cli
from ulmfit.outdir import lock_path, output_lock
from ulmfit.stages.classify import train
from ulmfit.stages.lm import pretrain
from ulmfit.errors import UlmfitError
from ulmfit.validate import check_fields, checked_arguments, convert

WORDS = "the a film plot actor great dull fun long short good bad scene music end story".split()


def _docs(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(WORDS, size=int(rng.integers(8, 20)))) for _ in range(n)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> dict[str, Path]:
    """A labelled tokenized folder, a raw text file, a tiny language model and a tiny classifier."""
    root = tmp_path_factory.mktemp("stack")
    tok = write_tokenized(root / "tok", {"train": _docs(40, 0), "valid": _docs(10, 1), "test": _docs(10, 2)},
                          labels={"train": [i % 2 for i in range(40)], "valid": [i % 2 for i in range(10)],
                                  "test": [i % 2 for i in range(10)]}, classes=["neg", "pos"])
    raw = root / "in" / "docs.txt"
    raw.parent.mkdir()
    raw.write_text("".join(" ".join(doc) + "\n" for doc in _docs(5, 3)))
    pretrain(str(tok), str(root / "lm"), preset="tiny", max_steps=1, device="cpu")
    train(data=str(tok), out=str(root / "clf"), from_scratch=True, preset="tiny", max_steps=1, device="cpu")
    return {"tok": tok, "raw": raw, "lm": root / "lm", "clf": root / "clf"}


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders`` with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for folder in folders if folder.exists()
            for p in sorted(folder.rglob("*"))}


def _copy(stack: dict[str, Path], name: str, tmp: Path) -> Path:
    return Path(shutil.copytree(stack[name], tmp / f"bad_{name}"))


def edit_json(folder: Path, file: str, change: Callable) -> None:
    path = folder / file
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def broken_tok(break_it: Callable[[Path], None]) -> Callable:
    """A setup that copies the tokenized folder to ``{tmp}/bad_tok`` and breaks it."""
    return lambda stack, tmp: break_it(_copy(stack, "tok", tmp))


def broken(name: str, break_it: Callable[[Path], None]) -> Callable:
    return lambda stack, tmp: break_it(_copy(stack, name, tmp))


def foreign_folder(stack, tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me")


def input_inside_out(stack, tmp):
    (tmp / "X").mkdir()
    (tmp / "X" / "data.txt").write_text("one doc\nanother doc\n")


def forward_recipe_runs(stack, tmp):
    """A runs root as scripts/trec6.sh leaves it with the default MODELS: no backward word LM."""
    for folder in ("trec/tok", "trec/lm_fwd", "wiki/lm_fwd"):
        (tmp / folder).mkdir(parents=True)
        (tmp / folder / "metrics.json").write_text("{}")


def one_class(folder: Path) -> None:
    for split in ("train", "valid", "test"):
        np.save(folder / f"{split}_labels.npy", np.zeros(len(np.load(folder / f"{split}_labels.npy")), np.int64))


def object_ids(folder: Path) -> None:
    np.save(folder / "test_ids.npy", np.array([1, "x"], dtype=object), allow_pickle=True)


def truncated_ids(folder: Path) -> None:
    data = (folder / "test_ids.npy").read_bytes()
    (folder / "test_ids.npy").write_bytes(data[: len(data) // 2])


def ids_beyond_vocab(folder: Path) -> None:
    ids = np.load(folder / "test_ids.npy")
    ids[3] = 10_000
    np.save(folder / "test_ids.npy", ids)


def float_offsets(folder: Path) -> None:
    np.save(folder / "test_offsets.npy", np.load(folder / "test_offsets.npy").astype(np.float32))


TOKENIZE = "tokenize --train {raw} --out {out}"
PRETRAIN = "pretrain --data {tok} --out {out} --preset tiny --device cpu"
FINETUNE = "finetune --pretrained {lm} --data {tok} --out {out} --device cpu"
TRAIN = "train --data {tok} --out {out} --from_scratch --preset tiny --device cpu"
EVALUATE = "evaluate --model {clf} --data {tok} --device cpu"
PREDICT = "predict --model {clf} --input {raw} --device cpu"

# (command line, text the error line must contain[, setup(stack, tmp) run first])
BAD = [
    ("toknize --train {raw}", "toknize: unknown command (did you mean tokenize?)"),
    (TOKENIZE + " --max_doc 3", "--max_doc: unknown option (did you mean --max_docs?)"),
    (TOKENIZE + " --max_docs 0", "--max_docs: must be at least 1"),
    (TOKENIZE + " --max_docs 2 --max_docs 3", "--max_docs: given twice"),
    (TOKENIZE + " --workers abc", "--workers: expected a whole number"),
    (TOKENIZE + " --min_freq 1.5", "--min_freq: expected a whole number"),
    (TOKENIZE + " --max_vocab 3", "--max_vocab: must be at least 9"),
    (TOKENIZE + " --unsup=maybe", "--unsup: expected true or false"),
    (TOKENIZE + " --tokenizer foo", "unknown tokenizer 'foo'"),
    ("tokenize --out {out}", "--train: required"),
    ("evaluate_lm {lm} {tok} test cpu extra", "extra: unexpected argument"),
    ("tokenize --train {tmp}/nope.txt --out {out}", "nope.txt: file not found"),
    ("tokenize --train {raw} --out {raw}", "--out: {raw} is a file"),
    ("tokenize --train {raw} --out {raw}/sub", "--out: {raw} is a file, so nothing can be written under it"),
    ("tokenize --train {raw} --out /proc/ulmfit/tok", "--out: cannot write in /proc"),
    ("tokenize --train {tmp}/X/data.txt --out {tmp}/X --overwrite", "--out: {tmp}/X would replace the input",
     input_inside_out),
    ("tokenize --train {raw} --out {tmp}/mine --overwrite", "{tmp}/mine: folder exists and is not a tokenize output",
     foreign_folder),
    (PRETRAIN + " --max_step 5", "--max_step: unknown option (did you mean --max_steps?)"),
    (PRETRAIN + " --seed abc", "--seed: expected a whole number, got 'abc'"),
    (PRETRAIN + " --seed -1", "--seed: must be in [0, 4294967295]"),
    (PRETRAIN + " --epochs 1.5", "--epochs: expected a whole number, got 1.5"),
    (PRETRAIN + " --epochs 0", "--epochs: must be at least 1"),
    (PRETRAIN + " --max_steps 0", "--max_steps: must be at least 1"),
    (PRETRAIN + " --bs 16.7", "--bs: expected a whole number"),
    (PRETRAIN + " --bptt 0", "--bptt: must be at least 1"),
    (PRETRAIN + " --lr -1", "--lr: must be in (0, 10]"),
    (PRETRAIN + " --lr 1e9", "--lr: must be in (0, 10]"),
    (PRETRAIN + " --lr nan", "--lr: expected a finite number"),
    (PRETRAIN + " --lr", "--lr: needs a value"),
    (PRETRAIN + " --drop_mult -0.5", "--drop_mult: must be at least 0"),
    (PRETRAIN + " --backwards=maybe", "--backwards: expected true or false"),
    ("pretrain --data {tok} --out {out} --device cuda:99", "--device: no CUDA device"),
    ("pretrain --data {tok} --out {out} --device tpu", "--device: unknown device 'tpu'"),
    ("pretrain --data {tok} --out {out} --preset huge", "unknown preset 'huge'"),
    (PRETRAIN + " --schedule nope", "unknown schedule 'nope'"),
    (PRETRAIN + " --tricks nope", "unknown trick 'nope'"),
    ("pretrain --data {tmp}/nope --out {out}", "{tmp}/nope/vocab.json: file not found"),
    ("pretrain --data {tmp}/bad_tok --out {out} --preset tiny", "bad_tok/train_offsets.npy: expected a "
     "one-dimensional integer array", broken_tok(lambda f: np.save(f / "train_offsets.npy", np.zeros((2, 2))))),
    (FINETUNE + " --epochs -2", "--epochs: must be at least 0"),
    (FINETUNE + " --backwards", "is a forward language model"),
    ("finetune --pretrained {lm} --data {tok} --out {lm}", "{lm}: already exists and is not empty"),
    ("finetune --pretrained {tmp}/bad_lm --data {tok} --out {out}", "bad_lm/config.json: field 'bs' should be int",
     broken("lm", lambda f: edit_json(f, "config.json", lambda c: {**c, "bs": "64"}))),
    ("finetune --pretrained {tmp}/bad_lm --data {tok} --out {out}", "bad_lm/config.json: field 'lr' must be in",
     broken("lm", lambda f: edit_json(f, "config.json", lambda c: {**c, "lr": -3}))),
    ("finetune --pretrained {tmp}/bad_lm --data {tok} --out {out}", "bad_lm/config.json: expected a JSON object",
     broken("lm", lambda f: edit_json(f, "config.json", lambda c: [c]))),
    ("evaluate_lm --model {lm} --data {tok} --split nope", "no 'nope' split"),
    ("evaluate_lm --model {lm} --data {tmp}/bad_tok", "bad_tok/test_ids.npy: not a readable numeric .npy",
     broken_tok(object_ids)),
    ("evaluate_lm --model {lm} --data {tmp}/bad_tok", "bad_tok/test_ids.npy: not a readable numeric .npy",
     broken_tok(truncated_ids)),
    ("evaluate_lm --model {lm} --data {tmp}/bad_tok", "bad_tok/test_ids.npy: token id 10000 is outside the vocabulary",
     broken_tok(ids_beyond_vocab)),
    ("evaluate_lm --model {lm} --data {tmp}/bad_tok", "bad_tok/test_offsets.npy: expected a one-dimensional integer",
     broken_tok(float_offsets)),
    (TRAIN + " --bs 0", "--bs: must be at least 1"),
    (TRAIN + " --epochs 0", "--epochs: must be at least 1"),
    (TRAIN + " --max_tokens 0", "--max_tokens: must be at least 1"),
    (TRAIN + " --no_gradual_unfreezing=perhaps", "--no_gradual_unfreezing: expected true or false"),
    (TRAIN + " --head_only", "--head_only trains on a pretrained encoder"),
    ("train --data {tok} --out {out}", "--encoder (a fine-tuned language-model folder) is required"),
    ("train --data {tmp}/bad_tok --out {out} --from_scratch --preset tiny", "every training document has the same class",
     broken_tok(one_class)),
    (EVALUATE + " --tta -1", "--tta: must be at least 0"),
    (EVALUATE + " --bs 0", "--bs: must be at least 1"),
    ("evaluate --model {tmp}/bad_clf --data {tok}", "bad_clf/model.pt: does not match the classifier",
     broken("clf", lambda f: edit_json(f, "classes.json", lambda c: c + ["third"]))),
    ("evaluate --model {tmp}/bad_clf --data {tok}", "bad_clf/classes.json: expected a JSON list of class names",
     broken("clf", lambda f: edit_json(f, "classes.json", lambda c: {"classes": c}))),
    (PREDICT + " --output {raw}", "--output: {raw} would replace the input"),
    (PREDICT + " --output {tmp}", "--output: {tmp} is a folder"),
    (PREDICT + " --output {tmp}/p.txt", "p.txt: cannot tell the output format"),
    ("predict --model {clf} --input {tmp}/nope.txt --output {tmp}/p.csv", "nope.txt: file not found"),
    ("ensemble --models , --data {tok}", "--models: give at least one classifier folder"),
    ("ensemble --models {clf} --data {tok} --out {raw}", "--out: {raw} is a file"),
    ("ensemble --models {clf} --data {tok} --out {clf}", "--out: {clf} is one of the models"),
    ("ablate --runs {tmp}/nope", "{tmp}/nope/trec/tok: not found; run scripts/trec6.sh"),
    ("ablate --runs {tmp} --tables nope", "--tables: unknown table 'nope'; choose from classifier, pretraining"),
    ("ablate --runs {tmp} --tables direction",
     "{tmp}/wiki/lm_bwd: not found; the direction table starts from it: run MODELS=bwd scripts/pretrain_wiki.sh",
     forward_recipe_runs),
    ("report --runs_dir {tmp}/nope", "nope: folder not found"),
    ("tricks --verbose", "--verbose: unknown option"),
    ("import_fastai --weights {tmp}/nope.pth --vocab {tmp}/nope.pkl --out {tmp}/imp", "nope.pkl: file not found"),
    ("lr_find train --data {tok} --out {tmp}/lrf --steps 1", "--steps: must be at least 2"),
]


@pytest.mark.parametrize("case", BAD, ids=[" ".join(c[0].split()[:1] + c[0].split()[-2:]) for c in BAD])
def test_bad_invocation_is_one_clear_error_and_changes_nothing(case, stack, tmp_path, capsys):
    command, expected, *setup = case
    places = {**{k: str(v) for k, v in stack.items()}, "tmp": str(tmp_path), "out": str(tmp_path / "out")}
    for prepare in setup:
        prepare(stack, tmp_path)
    before = snapshot(tmp_path, *stack.values())
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([arg.format(**places) for arg in command.split()])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.format(**places) in lines[0]
    assert "Traceback" not in err
    assert snapshot(tmp_path, *stack.values()) == before
    assert not (tmp_path / "out").exists()


def test_the_table_covers_every_stage():
    assert len(BAD) >= 40
    assert {case[0].split()[0] for case in BAD} >= set(cli.commands())


def test_booleans_parse_words_and_false_is_false(stack):
    for word, meaning in [("false", False), ("False", False), ("no", False), (0, False), ("true", True),
                          ("YES", True), (1, True), (True, True)]:
        assert convert(word, bool) is meaning
    args = checked_arguments(pretrain, (), {"data": str(stack["tok"]), "out": "x", "backwards": "false"})
    assert args["backwards"] is False


def test_numbers_and_text_are_converted_to_the_annotated_type():
    assert convert(3.0, int | None) == 3 and isinstance(convert(3.0, int | None), int)
    assert convert(2, float) == 2.0 and convert("1e-3", float) == 0.001
    assert convert(2020, str) == "2020" and convert(("a", "b"), str) == "a,b"
    assert convert(("fgm", "ema"), str | Sequence[str] | None) == ["fgm", "ema"]  # as --tricks fgm,ema
    assert convert(None, int | None) is None
    with pytest.raises(ValueError, match="needs a value"):
        convert(None, int)
    assert convert("bf16", Literal["fp32", "bf16"]) == "bf16"  # an option with fixed choices
    with pytest.raises(ValueError, match="choose one of fp32, bf16, got 'fp16'"):
        convert("fp16", Literal["fp32", "bf16"])


def test_saved_config_fields_are_checked_by_type_and_range():
    @dataclass
    class Saved:
        bs: int = 1
        betas: tuple[float, float] = (0.9, 0.99)
        precision: Literal["fp32", "bf16"] = "fp32"

    check_fields(Saved, {"bs": 4, "betas": [0.8, 1], "precision": "bf16"}, "c.json")
    for bad, message in [({"bs": True}, "field 'bs' should be int"), ({"bs": 0}, "field 'bs' must be at least 1"),
                         ({"betas": [0.9]}, "field 'betas' should be"),
                         ({"precision": "fp16"}, "field 'precision' should be")]:
        with pytest.raises(UlmfitError, match=f"^c.json: {message}"):
            check_fields(Saved, bad, "c.json")


def test_a_second_writer_of_the_same_output_fails_at_once(stack, tmp_path, capsys):
    out = tmp_path / "tok"
    with output_lock(out):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"error: {out}: another ulmfit run is writing it" in capsys.readouterr().err
    assert not out.exists() and not lock_path(out).exists()
    cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(out), "--min_freq", "1"])  # released
    assert (out / "metrics.json").exists() and not lock_path(out).exists()


def test_stale_temporary_files_of_killed_runs_are_removed_and_others_kept(stack, tmp_path):
    out = tmp_path / "tok"
    (tmp_path / ".tok.k1ll3d_0.tmp").mkdir()  # a killed tokenize's staging folder
    (tmp_path / ".tok.v2.k1ll3d_0.tmp").mkdir()  # another output's: not ours to remove
    (tmp_path / ".tokens.csv").write_text("a user's file")
    cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(out), "--min_freq", "1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tok.v2.k1ll3d_0.tmp", ".tokens.csv", "tok"]
    (out / ".metrics.json.abcd1234.tmp").write_text("half")  # a killed write inside an ulmfit folder
    cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(out), "--min_freq", "1"])
    assert not (out / ".metrics.json.abcd1234.tmp").exists()


def test_overwrite_replaces_only_a_folder_the_same_stage_wrote(stack, tmp_path, capsys):
    out = tmp_path / "tok"
    cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(out), "--min_freq", "1"])
    cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(out), "--min_freq", "2", "--overwrite"])
    assert json.loads((out / "config.json").read_text())["min_freq"] == 2
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(out), "--overwrite"])
    assert "(it holds notes.txt)" in capsys.readouterr().err and (out / "notes.txt").exists()
    with pytest.raises(SystemExit):
        cli.main(["tokenize", "--train", str(stack["raw"]), "--out", str(stack["lm"]), "--overwrite"])
    assert "not a tokenize output" in capsys.readouterr().err and (stack["lm"] / "model.pt").exists()


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_stopped_before_its_first_checkpoint_starts_again(stack, tmp_path, capsys, resume):
    out = tmp_path / "lm"
    out.mkdir()
    shutil.copy(stack["lm"] / "config.json", out)  # what prepare_out writes before training starts
    shutil.copy(stack["lm"] / "vocab.json", out)
    cli.main(["pretrain", "--data", str(stack["tok"]), "--out", str(out), "--preset", "tiny", "--max_steps", "1",
              "--device", "cpu", *(["--resume"] if resume else [])])
    assert "stopped before its first checkpoint; starting it again" in capsys.readouterr().err
    assert (out / "metrics.json").exists() and (out / "last.pt").exists()


def test_sigterm_stops_like_ctrl_c(monkeypatch, capsys):
    def killed() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives first

    monkeypatch.setattr(cli, "list_tricks", killed)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tricks"])
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == "terminated"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the CLI's only while it runs
