"""The entry-point boundary: which errors are the user's, how they are reported, and what noise is dropped."""

from __future__ import annotations

import logging
import os
import warnings

import pytest
from hydra.errors import InstantiationException

from conformer_prune.cli.entry import UserErrorReport, entry_point, exit_on_user_error
from conformer_prune.console import KNOWN_LOG_LINES, LIGHTNING_LOGGERS, quiet_fds, quiet_third_party
from conformer_prune.errors import UserError, log_to_files, user_error


def _package_value_error() -> ValueError:
    from conformer_prune.data.tokenizer import apply_alphabet_policy

    try:
        apply_alphabet_policy([], "AB", "maybe")
    except ValueError as err:
        return err
    raise AssertionError("apply_alphabet_policy accepted an unknown policy")


def _third_party_value_error() -> ValueError:
    try:
        int("not a number")
    except ValueError as err:
        return err
    raise AssertionError("unreachable")


def test_our_value_errors_and_user_errors_are_user_errors_others_are_not() -> None:
    ours = _package_value_error()
    assert user_error(ours) is ours
    assert user_error(UserError("x")) is not None
    assert user_error(_third_party_value_error()) is None  # raised outside the package: a bug, keep the traceback
    assert user_error(TypeError("x")) is None
    try:
        raise InstantiationException("Error in call to target 'x'") from ours
    except InstantiationException as wrapped:
        assert user_error(wrapped) is ours  # Hydra's instantiate wrapper is looked through


def test_a_user_error_becomes_one_paragraph_for_hydra_to_print_without_traceback(monkeypatch) -> None:
    from hydra.errors import CompactHydraException

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    cause = UserError("data.root=/x does not exist.\n\nFix: set data.root")
    with pytest.raises(UserErrorReport) as done, exit_on_user_error():
        raise cause
    assert str(done.value) == "Error: data.root=/x does not exist.\nFix: set data.root"  # blank line dropped
    assert done.value.__cause__ is cause
    assert isinstance(done.value, CompactHydraException)  # Hydra prints these as the message alone, exit 1


def test_full_error_and_internal_errors_keep_the_exception(monkeypatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(UserError), exit_on_user_error():
        raise UserError("shown with its traceback")
    monkeypatch.delenv("HYDRA_FULL_ERROR")
    with pytest.raises(KeyError), exit_on_user_error():
        raise KeyError("an internal bug")
    with pytest.raises(ValueError, match="invalid literal"), exit_on_user_error():
        raise _third_party_value_error()


def test_the_error_also_goes_to_the_log_file(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    handler = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(UserErrorReport), exit_on_user_error():
            raise UserError("trainer.max_steps must be > 0")
        log_to_files("a file-only line")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "train.log").read_text()
    assert "Error: trainer.max_steps must be > 0" in text and "a file-only line" in text
    assert "a file-only line" not in capsys.readouterr().err


def test_known_third_party_noise_is_dropped_by_name_and_the_rest_kept(caplog) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("a warning of our own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning of our own"]
    logger = logging.getLogger(LIGHTNING_LOGGERS[2])
    with caplog.at_level(logging.INFO, logger=logger.name):
        tip = "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"
        assert any(pattern.startswith("💡") for pattern, _ in KNOWN_LOG_LINES)
        logger.info(tip)
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_quiet_fds_drops_the_lm_loaders_chatter_only(capfd) -> None:
    chatter = (
        b"Loading the LM will be faster if you build a binary file.\nReading /tmp/run/lm.arpa\n"
        b"----5---10---15---20---25---30---35---40---45---50---55---60---65---70---75---80---85---90---95--100\n"
        + b"*" * 100
        + b"\n"
    )
    with quiet_fds():
        os.write(2, chatter + b"a real message from C\n")
        os.write(1, b"stdout line\n")
    out, err = capfd.readouterr()
    assert "Loading the LM" not in out + err and "****" not in out + err and "----5---10" not in out + err
    assert "a real message from C" in err and "stdout line" in err
    with pytest.raises(RuntimeError), quiet_fds():
        os.write(2, chatter)
        raise RuntimeError("the loader failed")
    assert "Loading the LM" in capfd.readouterr().err  # on failure nothing is hidden


def test_entry_point_installs_the_filters_and_the_boundary(monkeypatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    expected = pytest.raises(UserErrorReport, match="^Error: eval_checkpoint='middle'")
    with warnings.catch_warnings(), expected, entry_point():
        raise UserError("eval_checkpoint='middle' must be one of last, best")
