import json
import subprocess
import sys

import pytest

from ulmfit.cli import commands, main

STAGES = ["tokenize", "pretrain", "import_fastai", "finetune", "evaluate_lm", "train", "evaluate", "predict",
          "ensemble", "tricks", "ablate", "report", "lr_find"]


def _ulmfit(*args):
    return subprocess.run([sys.executable, "-m", "ulmfit", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_stage():
    result = _ulmfit("--help")
    assert result.returncode == 0
    for stage in STAGES:
        assert stage in result.stderr  # fire writes help to stderr
    assert list(commands()) == STAGES


def test_stage_help_documents_its_arguments():
    result = _ulmfit("tokenize", "--help")
    assert result.returncode == 0
    for flag in ["--train", "--out", "--format", "--encoding", "--vocab_from", "--max_vocab"]:
        assert flag in result.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenize", "--train", str(missing), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_result_is_printed_as_json(tmp_path, capsys):
    text = tmp_path / "docs.txt"
    text.write_text("A first document .\nAnd a SECOND one !\n")
    main(["tokenize", "--train", str(text), "--out", str(tmp_path / "tok"), "--min_freq", "1"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["splits"]["train"]["docs"] == 2
