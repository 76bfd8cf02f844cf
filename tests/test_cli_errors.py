"""What the ``clinval`` command does with errors: a user's is one paragraph (exit 2), a bug is one line (exit 70)."""

from __future__ import annotations

import click
import pytest
import yaml
from click.testing import CliRunner

from clinval import data, evidence, model, pccp, predlog, review, signing, sources, stream
from clinval.cli import main
from clinval.cli._common import ENV_DEBUG, EXIT_ERROR, EXIT_INTERNAL
from clinval.errors import ClinvalError, InputError, InputTypeError, MissingInputError
from clinval.ledger import CheckpointError, LedgerError
from clinval.serve.model_in_force import ServeRefused
from clinval.serve.scorer import ModelNotCompilable


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


@pytest.mark.parametrize(("name", "command"), list(_commands(main)), ids=[n for n, _ in _commands(main)])
def test_every_command_reports_errors_through_friendly(name, command):
    assert getattr(command.callback, "friendly", False), f"`clinval {name}` is not wrapped in friendly"


@pytest.mark.parametrize(
    ("error", "old_bases"),
    [
        (data.StudyError, (ValueError,)), (sources.SourceError, (ValueError,)), (pccp.PlanError, (ValueError,)),
        (pccp.ModificationRefused, (ValueError,)), (LedgerError, ()), (CheckpointError, (ValueError,)),
        (signing.SigningError, ()), (evidence.NotebookFailed, (RuntimeError,)), (review.GateRefused, ()),
        (ServeRefused, ()), (stream.StreamError, (ValueError,)), (predlog.LogCorrupt, (ValueError,)),
        (predlog.LogUnavailable, ()), (ModelNotCompilable, (ValueError,)),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_project_errors_are_clinval_errors_and_keep_their_bases(error, old_bases):
    assert issubclass(error, ClinvalError)
    for base in old_bases:
        assert issubclass(error, base)


def test_input_error_is_still_a_value_error():
    assert issubclass(InputError, ValueError) and issubclass(InputError, ClinvalError)


def test_former_key_and_type_errors_keep_their_bases_and_print_their_message_as_given():
    assert issubclass(MissingInputError, KeyError) and issubclass(MissingInputError, InputError)
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, InputError)
    assert str(MissingInputError("column 'age' is missing")) == "column 'age' is missing"  # KeyError would quote it


def test_bad_data_and_settings_raise_clinval_errors_in_the_numeric_modules():
    """What `drift compare`, `drift stream` and the notebooks pass on from a person's files and params."""
    import pandas as pd

    from clinval.drift import DriftSettings, compare_period
    from clinval.fairness import FairnessSettings
    from clinval.profile import build_reference_profile
    from clinval.spc import ewma_arl

    with pytest.raises(InputError, match="fdr_level"):
        DriftSettings(fdr_level=2)
    with pytest.raises(InputError):
        FairnessSettings(threshold=2.0, tolerance_difference=0.1, tolerance_ratio=0.8)
    with pytest.raises(InputError):
        ewma_arl(lam=1.5, L=3.0)
    frame = pd.DataFrame({"age": [60.0, 70.0, 80.0, 65.0], "sex": ["f", "m", "f", "m"]})
    with pytest.raises(InputTypeError, match="'sex'"):
        build_reference_profile(frame, numeric=["sex"], categorical=[])
    profile = build_reference_profile(frame, numeric=["age"], categorical=["sex"], n_bins=2)
    with pytest.raises(MissingInputError, match="'sex'"):
        compare_period(profile, frame.drop(columns="sex"), settings=DriftSettings(n_bins=2))


@pytest.fixture()
def recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_DEBUG, raising=False)
    (tmp_path / "prepared").mkdir()
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"estimator": "logistic_regression", "seed": 1, "holdout_fraction": 0.3}))
    return path


def _train(recipe):
    return CliRunner().invoke(main, ["train", "--prepared", "prepared", "--recipe", str(recipe), "--out", "out"])


def test_bad_params_are_a_user_error_in_one_paragraph(recipe):
    recipe.write_text(yaml.safe_dump({"estimator": "random_forest"}))
    result = _train(recipe)
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.output.startswith("Error: params/model.yaml: estimator 'random_forest' is not one of")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_missing_file_the_user_named_is_a_user_error(recipe):
    result = CliRunner().invoke(main, ["train", "--prepared", "nowhere", "--recipe", str(recipe)])
    assert result.exit_code == EXIT_ERROR and "nowhere" in result.output and "does not exist" in result.output


@pytest.mark.parametrize("raised", [ValueError("boom"), KeyError("boom"), TypeError("boom")], ids=lambda e: type(e).__name__)
def test_a_bug_is_an_internal_error_not_a_user_error(recipe, monkeypatch, raised):
    """A library function raising a plain ValueError or KeyError is a bug in clinval, not bad input."""

    def broken(params):
        raise raised

    monkeypatch.setattr(model, "recipe_from_params", broken)
    result = _train(recipe)
    assert result.exit_code == EXIT_INTERNAL and result.exit_code != EXIT_ERROR
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"internal error: {type(raised).__name__}:")
    assert "boom" in lines[0] and f"{ENV_DEBUG}=1" in lines[0] and not lines[0].startswith("Error:")


def test_debug_shows_the_traceback_of_a_bug(recipe, monkeypatch):
    def broken(params):
        raise ValueError("boom")

    monkeypatch.setattr(model, "recipe_from_params", broken)
    monkeypatch.setenv(ENV_DEBUG, "1")
    result = _train(recipe)
    assert isinstance(result.exception, ValueError) and str(result.exception) == "boom"
