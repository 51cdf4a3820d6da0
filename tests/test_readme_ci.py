"""README opens with the two set-up-from-nothing commands, and CI runs the test one."""

import re
import subprocess

from conftest import REPO


def commands():
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_has_the_two_commands_first():
    first_two = commands()[:2]
    assert "planner recommend --target-loss 2.0" in first_two[0] or "flows/" in first_two[0]
    assert "pytest" in first_two[1]
    for cmd in first_two:
        assert cmd.startswith("python3 -m venv .venv && ")  # each does its own set-up


def test_ci_runs_the_readme_test_command():
    script = (REPO / ".ci" / "run").read_text()
    awk = re.search(r"cmd=\$\((awk .+? README\.md)\)", script).group(1)
    got = subprocess.run(["bash", "-c", awk], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert got == commands()[1]


def test_readme_validation_section_is_what_planner_validate_computes():
    """README's "How far to trust the training estimates" is generated (scripts/validation_readme.py)."""
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "validation_readme.py"), "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
