"""Which home a command uses: --home, BIOMARKERFLOW_HOME, the nearest .biomarkerflow above, or a new one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from biomarkerflow.errors import CatalogError
from biomarkerflow.home import HOME_ENV, HomeLocation, find_home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp/proj/.biomarkerflow (a home), and tmp/proj/studies/wrist (a folder deep inside)."""
    (tmp_path / "proj" / ".biomarkerflow").mkdir(parents=True)
    (tmp_path / "proj" / "studies" / "wrist").mkdir(parents=True)
    return tmp_path / "proj"


def test_option_wins_over_environment_and_found_home(project: Path, tmp_path: Path) -> None:
    env = {HOME_ENV: str(tmp_path / "from-env")}
    found = find_home(tmp_path / "from-option", env, project / "studies")
    assert found == HomeLocation(tmp_path / "from-option", "option")
    assert found.describe() == f"{tmp_path / 'from-option'} (from --home)"


def test_environment_wins_over_found_home(project: Path, tmp_path: Path) -> None:
    found = find_home(None, {HOME_ENV: str(tmp_path / "from-env")}, project / "studies")
    assert found == HomeLocation(tmp_path / "from-env", "environment")
    assert found.describe().endswith(f"(from {HOME_ENV})")


def test_empty_environment_variable_counts_as_unset(project: Path) -> None:
    found = find_home(None, {HOME_ENV: ""}, project, stop_at=project.parent)
    assert found.source == "found"


def test_nearest_home_above_is_found(project: Path, tmp_path: Path) -> None:
    found = find_home(None, {}, project / "studies" / "wrist", stop_at=tmp_path)
    assert found == HomeLocation(project / ".biomarkerflow", "found")
    assert found.describe() == f"{project / '.biomarkerflow'} (found above the current folder)"
    in_project = find_home(None, {}, project, stop_at=tmp_path)
    assert in_project.path == project / ".biomarkerflow"
    assert in_project.describe().endswith("(found in the current folder)")


def test_the_nearest_of_two_homes_wins(project: Path, tmp_path: Path) -> None:
    inner = project / "studies" / ".biomarkerflow"
    inner.mkdir()
    assert find_home(None, {}, project / "studies" / "wrist", stop_at=tmp_path).path == inner


def test_a_file_named_like_a_home_is_passed_over(project: Path, tmp_path: Path) -> None:
    (project / "studies" / ".biomarkerflow").write_text("not a home")
    found = find_home(None, {}, project / "studies" / "wrist", stop_at=tmp_path)
    assert found.path == project / ".biomarkerflow"


def test_without_any_home_a_new_one_goes_in_the_current_folder(tmp_path: Path) -> None:
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    found = find_home(None, {}, cwd, stop_at=tmp_path)
    assert found == HomeLocation(cwd / ".biomarkerflow", "new")
    assert not found.path.exists()  # finding changes nothing
    assert "(new: no .biomarkerflow folder in the current folder or above it)" in found.describe()


def test_the_search_stops_at_stop_at(project: Path) -> None:
    cwd = project / "studies" / "wrist"
    assert find_home(None, {}, cwd, stop_at=project / "studies").source == "new"


def test_the_search_reaches_the_filesystem_root(tmp_path: Path) -> None:
    """Without stop_at it walks every parent: a home is found however deep the current folder is."""
    home = tmp_path / ".biomarkerflow"
    home.mkdir()
    deep = tmp_path.joinpath(*[f"d{i}" for i in range(30)])
    deep.mkdir(parents=True)
    assert find_home(None, {}, deep).path == home


def test_relative_option_and_environment_are_made_absolute(tmp_path: Path) -> None:
    by_option = find_home("rel/home", {}, tmp_path)
    assert by_option.path == tmp_path / "rel" / "home" and by_option.path.is_absolute()
    by_env = find_home(None, {HOME_ENV: "../other"}, tmp_path / "sub")
    assert by_env.path == tmp_path / "other"
    assert find_home(Path("."), {}, tmp_path).path == tmp_path


def test_relative_cwd_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_home(None, {}, Path("."), stop_at=tmp_path).path == tmp_path / ".biomarkerflow"


def test_tilde_is_expanded_with_the_given_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "me")}
    assert find_home("~/bf", env, Path("/")).path == tmp_path / "me" / "bf"
    assert find_home(None, {**env, HOME_ENV: "~"}, Path("/")).path == tmp_path / "me"


def test_symbolic_links_are_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert find_home("link", {}, tmp_path).path == real


def test_a_file_as_home_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CatalogError) as caught:
        find_home("notes.txt", {}, tmp_path)
    assert caught.value.message == f"--home {tmp_path / 'notes.txt'} is a file, not a folder"
    assert caught.value.hint and "--home" in caught.value.hint
    assert caught.value.exit_code == 4

    with pytest.raises(CatalogError, match=f"^{HOME_ENV}=.* is a file, not a folder$"):
        find_home(None, {HOME_ENV: "notes.txt"}, tmp_path)


def test_a_file_named_like_the_new_home_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".biomarkerflow").write_text("x")
    with pytest.raises(CatalogError, match=r"^the home .*/\.biomarkerflow is a file, not a folder$"):
        find_home(None, {}, tmp_path, stop_at=tmp_path)


def test_a_home_inside_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CatalogError) as caught:
        find_home("notes.txt/home/deeper", {}, tmp_path)
    assert caught.value.message == (
        f"--home {tmp_path / 'notes.txt' / 'home' / 'deeper'} cannot be created: "
        f"{tmp_path / 'notes.txt'} is a file, not a folder"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_home_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(CatalogError, match="cannot be created: you may not write to the folder"):
            find_home(locked / "home", {}, tmp_path)
    finally:
        locked.chmod(0o755)


def test_empty_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="--home is empty"):
        find_home("", {}, tmp_path)


def test_a_current_folder_reached_through_a_link_is_described_as_current(project: Path, tmp_path: Path) -> None:
    (tmp_path / "shortcut").symlink_to(project)
    found = find_home(None, {}, tmp_path / "shortcut", stop_at=tmp_path)
    assert found.path == project / ".biomarkerflow"
    assert found.describe().endswith("(found in the current folder)")
