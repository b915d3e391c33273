"""The local data directory: one variable (ALIGN_DATA_DIR) moves every default data path."""

from pathlib import Path

import pytest

from align.data import load_records
from align.data_dir import data_dir, data_dir_hint, data_path, expand_data_dir
from align.errors import MissingInput
from tests.paths import ROOT


def test_unset_or_blank_it_is_shared_data_beside_the_checkout():
    beside = ROOT.parent / "shared" / "data"
    assert data_dir({}) == beside and data_dir({"ALIGN_DATA_DIR": "  "}) == beside
    if not beside.is_dir():
        pytest.skip(f"{beside} (shared benchmark data) is not on this machine")
    assert Path(data_path("crows_pairs/crows_pairs_anonymized.csv", {})).is_file()


def test_the_variable_moves_it(tmp_path):
    env = {"ALIGN_DATA_DIR": str(tmp_path)}
    assert data_dir(env) == tmp_path
    assert data_path("hh_rlhf/x.jsonl.gz", env) == str(tmp_path / "hh_rlhf" / "x.jsonl.gz")
    assert data_dir({"ALIGN_DATA_DIR": "~/d"}) == Path.home() / "d"


def test_only_the_placeholder_is_expanded(tmp_path):
    env = {"ALIGN_DATA_DIR": str(tmp_path)}
    assert expand_data_dir("${ALIGN_DATA_DIR}/a/${ALIGN_DATA_DIR}", env) == f"{tmp_path}/a/{tmp_path}"
    for text in ("$ALIGN_DATA_DIR/a", "${HOME}/a", "org/dataset", "plain $ and {} text"):
        assert expand_data_dir(text, env) == text


def test_a_missing_file_under_it_says_how_to_move_it(tmp_path):
    env = {"ALIGN_DATA_DIR": str(tmp_path)}
    hint = data_dir_hint(tmp_path / "hh" / "test.jsonl.gz", env)
    assert str(tmp_path) in hint and f"ALIGN_DATA_DIR={tmp_path}" in hint
    assert "ALIGN_DATA_DIR is unset" in data_dir_hint(data_path("x.csv", {}), {})
    assert data_dir_hint("/elsewhere/x.csv", env) == "" and data_dir_hint("rel/x.csv", env) == ""


def test_load_records_names_the_variable_for_a_missing_default_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path))
    with pytest.raises(MissingInput, match=r"missing\.jsonl\.gz does not exist; .*set ALIGN_DATA_DIR"):
        load_records(data_path("hh_rlhf/missing.jsonl.gz"))
    with pytest.raises(MissingInput) as e:
        load_records(tmp_path.parent / "elsewhere.jsonl")
    assert "ALIGN_DATA_DIR" not in str(e.value)


def test_portable_path_names_the_data_dir_and_home_not_the_machine(tmp_path, monkeypatch):
    from align.data_dir import expand_data_dir, portable_path

    env = {"ALIGN_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "data" / "bbq").mkdir(parents=True)
    assert portable_path(str(tmp_path / "data" / "bbq"), env) == "${ALIGN_DATA_DIR}/bbq"
    assert expand_data_dir(portable_path(str(tmp_path / "data" / "bbq"), env), env) == str(
        tmp_path / "data" / "bbq"
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert portable_path(str(tmp_path / "home" / ".cache" / "m"), env) == "~/.cache/m"
    # hub names, relative paths and paths elsewhere are left as they are
    assert portable_path("nyu-mll/crows_pairs", env) == "nyu-mll/crows_pairs"
    assert portable_path("/opt/elsewhere/x.jsonl", env) == "/opt/elsewhere/x.jsonl"
    assert portable_path(None, env) is None


def test_results_documents_record_portable_sources(tmp_path, monkeypatch):
    from safety_evals import results

    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path))
    (tmp_path / "xstest").mkdir()
    info = results.DataInfo(source=str(tmp_path / "xstest"), sha256="0", n=3)
    assert info.to_json()["source"] == "${ALIGN_DATA_DIR}/xstest"
