"""The fastai-style pre rules (text) and post rules (tokens), one behaviour per test."""
import pytest

from ulmfit.text import rules
from ulmfit.text.special import BOS, MAJ, REP, UNK, UP, WREP


@pytest.mark.parametrize("raw, clean", [
    ("a<br />b", "a\nb"),
    ("a<br/>b<BR>c< br / >d", "a\nb\nc\nd"),
    ("Tom &amp; Jerry &quot;cat&quot; &#39;s", "Tom & Jerry \"cat\" 's"),
    ("a&nbsp;b\xa0c", "a b c"),
    ("the <unk> word", f"the  {UNK}  word"),
    ("1 @,@ 000 and well @-@ known , 3 @.@ 5", "1,000 and well-known , 3.5"),
    ("plain text", "plain text"),
])
def test_fix_html(raw, clean):
    assert rules.fix_html(raw) == clean


@pytest.mark.parametrize("raw, out", [
    ("cooool", f"c {REP} 4 o l"),
    ("wow!!!!!", f"wow {REP} 5 ! "),
    ("soo good!!!", "soo good!!!"),  # runs shorter than 4 stay
    ("a    b", "a    b"),  # white space is not a repetition
    ("aaaabbbb", f" {REP} 4 a  {REP} 4 b "),
])
def test_replace_rep_counts_the_whole_run(raw, out):
    assert rules.replace_rep(raw) == out


def test_spec_add_spaces():
    assert rules.spec_add_spaces("and/or #tag a\\b") == "and / or  # tag a \\ b"


def test_rm_useless_spaces_keeps_newlines():
    assert rules.rm_useless_spaces("  a  b\t c \n  d \u2009 e  \n\n f ") == "a b c\nd e\n\nf"


def test_replace_wrep_runs_of_four_or_more():
    assert rules.replace_wrep(["a", "a", "a", "a", "a", "b"]) == [WREP, "5", "a", "b"]
    assert rules.replace_wrep(["a", "a", "a", "b"]) == ["a", "a", "a", "b"]
    assert rules.replace_wrep(["No", "no", "no", "no"]) == ["No", "no", "no", "no"]  # case-sensitive


def test_case_marker():
    assert rules.case_marker("HELLO") == (UP, "hello")
    assert rules.case_marker("Hello") == (MAJ, "hello")
    assert rules.case_marker("hello") == (None, "hello")
    assert rules.case_marker("I") == (None, "i")  # single letters: no marker (fastai)
    assert rules.case_marker("McDonald") == (None, "mcdonald")
    assert rules.case_marker("U.S.") == (UP, "u.s.")


def test_replace_caps_lowercases_everything():
    assert rules.replace_caps(["The", "BBC", "said", "I"]) == [MAJ, "the", UP, "bbc", "said", "i"]


def test_drop_spaces_keeps_one_newline_mark():
    assert rules.drop_spaces(["a", " ", "\n\n ", "b", "\n"]) == ["a", "\n", "b", "\n"]


def test_add_bos():
    assert rules.add_bos(["a"]) == [BOS, "a"]


def test_post_rules_order_repeats_before_case():
    tokens = ["Hi", "Hi", "Hi", "Hi", " ", "YES"]
    assert rules.apply_post_rules(tokens) == [BOS, WREP, "4", MAJ, "hi", UP, "yes"]


def test_pre_rules_apply_in_the_given_order():
    names = ["fix_html", "replace_rep", "spec_add_spaces", "rm_useless_spaces"]
    assert rules.apply_pre_rules("So   cooool<br />and/or", names) == f"So c {REP} 4 o l\nand / or"


def test_detokenize_undoes_markers():
    tokens = [BOS, MAJ, "hello", UP, "bbc", WREP, "4", MAJ, "no", "c", REP, "4", "o", "\n", "end"]
    assert rules.detokenize(tokens) == "Hello BBC No No No No c oooo\nend"
