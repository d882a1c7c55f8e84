"""Every option has --help text and is documented in the README."""

from __future__ import annotations

from pytest_vllm_serve.config import OPTIONS
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def test_every_option_is_in_the_readme():
    missing = [f"--{opt.name}" for opt in OPTIONS if f"`--{opt.name}" not in README]
    assert not missing, f"options missing from README.md: {missing}"


def test_every_option_has_help_text(pytester):
    result = pytester.runpytest_subprocess("--help")
    text = result.stdout.str()
    for opt in OPTIONS:
        assert f"--{opt.name}" in text
        assert len(opt.help) > 20, opt.name
