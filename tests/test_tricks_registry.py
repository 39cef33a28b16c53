import pytest

from ulmfit.cli import main
from ulmfit.errors import UlmfitError
from ulmfit.tricks import build_callbacks, list_tricks, parse_tricks
from ulmfit.tricks.label_smoothing import SmoothedLoss


def test_spec_resolves_every_default_and_accepts_fire_tuples_and_saved_dicts():
    assert parse_tricks("label_smoothing(alpha=0.2)", "classifier") == {"label_smoothing": {"alpha": 0.2}}
    resolved = parse_tricks(("label_smoothing",), "classifier")
    assert resolved == {"label_smoothing": {"alpha": 0.1}}
    assert parse_tricks(resolved, "classifier") == resolved      # a saved config reruns as is
    assert parse_tricks(None, "lm") == {} and parse_tricks("", "classifier") == {}


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown trick 'nope'"),
    ("label_smoothing(beta=1)", "unexpected keyword argument 'beta'"),
    ("label_smoothing(alpha=2)", r"alpha must be in \[0, 1\)"),
    ("label_smoothing(0.1)", "write name\\(param=value"),
    ("label_smoothing(alpha=x)", "must be literals"),
    ("label_smoothing,label_smoothing", "given twice"),
    ("a b", "expected names"),
])
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(UlmfitError, match=message):
        parse_tricks(spec, "classifier")


def test_a_trick_is_refused_in_a_stage_it_does_not_apply_to():
    with pytest.raises(UlmfitError, match="classifier stage"):
        parse_tricks("label_smoothing", "lm")


def test_callbacks_are_built_from_the_resolved_dict():
    (cb,) = build_callbacks({"label_smoothing": {"alpha": 0.3}})
    assert isinstance(cb, SmoothedLoss) and cb.alpha == 0.3


def test_every_trick_is_listed_with_defaults_and_a_description(capsys):
    listed = list_tricks()
    assert listed["label_smoothing"]["defaults"] == {"alpha": 0.1}
    for name, info in listed.items():
        assert info["about"], f"{name} has no docstring"
        assert set(info["stages"]) <= {"lm", "classifier"}
        parse_tricks(name, info["stages"][0])  # the defaults are valid
    main(["tricks"])
    assert '"label_smoothing"' in capsys.readouterr().out
