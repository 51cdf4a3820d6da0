"""`planner --version` prints the package's one version (the wheel's metadata reads the same attribute)."""

import importlib.metadata
import subprocess
import sys

import scaling_planner


def test_version_flag_prints_the_package_version():
    proc = subprocess.run([sys.executable, "-m", "scaling_planner", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.strip() == f"planner (scaling-planner) {scaling_planner.__version__}"
    assert importlib.metadata.version("scaling-planner") == scaling_planner.__version__


def test_a_verb_alone_builds_only_its_parser_and_still_rejects_unknown_verbs():
    from scaling_planner.cli import build_parser

    only = build_parser("recommend")
    assert only.parse_args(["recommend", "--target-loss", "2"]).verb == "recommend"
    proc = subprocess.run([sys.executable, "-m", "scaling_planner", "nosuchverb"], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "recommend" in proc.stderr
