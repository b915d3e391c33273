"""The README's two set-up commands: CI (`.ci/run`) runs exactly the README's test command, and the
quickstart command names a config and console script that exist."""

import re

from tests.paths import ROOT


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_exactly_the_readme_test_command():
    commands = _readme_commands()
    tests = [c for c in commands if "pytest" in c]
    assert len(tests) == 1, commands
    ci_lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if "pytest" in ln]
    assert ci_lines == tests


def test_readme_quickstart_names_a_config_that_exists():
    (quickstart,) = [c for c in _readme_commands() if "align pipeline" in c]
    config = quickstart.split("align pipeline", 1)[1].split()[0]
    assert (ROOT / config).is_file(), config
    assert quickstart.startswith("bash scripts/setup.sh && ")
    assert (ROOT / "scripts/setup.sh").is_file()
