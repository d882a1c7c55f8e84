"""Path values given after a space never cost the user's pytest configuration (cmdline.py).

pytest chooses rootdir and configfile before it loads the plugin, and takes the value
of ``--vllm-model /models/llama`` for a test path when the path exists. Each inner
project here has a pytest.ini that sets ``testpaths`` and a ``vllm_*`` key, and a
failing trap test outside its testpaths: a run that lost the ini collects the trap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vllm_serve import cmdline
from pytest_vllm_serve.config import OPTIONS, VALUE_OPTIONS

VALUES = (*VALUE_OPTIONS, *cmdline.BENCHMARK_VALUE_OPTIONS)

# Every option whose value may be a path, with a valid value of that kind made outside the project.
PATH_OPTIONS = {
    "--vllm-model": lambda out: _mkdir(out / "models" / "llama"),
    "--vllm-results-dir": lambda out: _mkdir(out / "results"),
    "--vllm-cache-dir": lambda out: _mkdir(out / "cache"),
    "--vllm-tokenizer": lambda out: _write(out / "tok" / "tokenizer.json", "{}"),
    "--vllm-dataset-path": lambda out: _write(out / "data" / "sharegpt.json", "[]"),
    "--vllm-baseline": lambda out: _write(
        out / "old" / "summary.json", json.dumps({"format": "pytest-vllm-serve/results-v1", "points": []})
    ),
    "--vllm-docker": lambda out: _write(out / "images" / "vllm.tar", ""),
    "--vllm-container-mount": lambda out: _mkdir(out / "fsx"),
    "--vllm-viztracer": lambda out: _write(out / "trace" / "client.json", ""),
    "--vllm-trace": lambda out: _write(
        out / "traces" / "mooncake.jsonl", '{"timestamp": 0, "input_length": 8, "output_length": 4, "hash_ids": [1]}\n'
    ),
    "--benchmark-json": lambda out: _write(out / "bench" / "out.json", "{}"),
}
# Options whose metavar says "path" (the guard below keeps PATH_OPTIONS complete).
PATH_METAVARS = {"NAME_OR_PATH", "DIR", "FILE", "PATH", "IMAGE", "MOUNTS"}

PROJECT_INI = """[pytest]
testpaths = tests
vllm_num_prompts = 7
"""
CHECK = """
def test_config(request):
    assert request.config.getini("vllm_num_prompts") == "7"
    print("ROOT", request.config.rootpath, "INI", request.config.inipath)
"""
TRAP = "def test_trap():\n    raise AssertionError('collected from outside testpaths: the project ini was lost')\n"


def _mkdir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    pytester.makefile(".ini", pytest=PROJECT_INI)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_config.py").write_text(CHECK)
    (pytester.path / "test_trap.py").write_text(TRAP)
    return pytester.path


@pytest.fixture
def outside(tmp_path_factory) -> Path:
    """A folder outside the inner project (where models and files usually are)."""
    return tmp_path_factory.mktemp("outside")


# -- the pure parts ---------------------------------------------------------------------------


def test_split_values_finds_only_existing_paths_after_value_options(tmp_path):
    (tmp_path / "m").mkdir()
    args = [
        "-m",
        "smoke",
        "--vllm-model",
        "m",
        "--vllm-url",
        "http://x:8000",
        "--vllm-results-dir",
        "nope",
        "--vllm-slurm",
        "m",
        "--",
        "--vllm-model",
        "m",
    ]
    splits = cmdline.split_values(args, VALUES, tmp_path)
    assert splits == [cmdline.SplitValue("--vllm-model", "m", 2)]  # flags, missing paths and after "--" are left
    assert cmdline.join_values(args, splits) == ["-m", "smoke", "--vllm-model=m", *args[4:]]


def test_split_values_reads_node_ids_as_pytest_does(tmp_path):
    (tmp_path / "t.py").write_text("")
    assert cmdline.split_values(["--vllm-baseline", "t.py::test_x"], VALUES, tmp_path)


def test_rerun_argv_replaces_only_pytests_arguments():
    orig = ["/venv/bin/python", "-X", "dev", "-m", "pytest", "--vllm-model", "/m"]
    argv = ["/site/pytest/__main__.py", "--vllm-model", "/m"]
    assert cmdline.rerun_argv(orig, argv, ["--vllm-model=/m"]) == [
        "/venv/bin/python",
        "-X",
        "dev",
        "-m",
        "pytest",
        "--vllm-model=/m",
    ]
    script = ["/venv/bin/python", "/venv/bin/pytest", "--vllm-model", "/m"]
    assert cmdline.rerun_argv(script, ["/venv/bin/pytest", "--vllm-model", "/m"], ["--vllm-model=/m"]) == [
        "/venv/bin/python",
        "/venv/bin/pytest",
        "--vllm-model=/m",
    ]
    assert cmdline.rerun_argv(["python", "run.py"], ["run.py", "--vllm-model", "/m"], []) is None


def test_every_path_valued_option_is_covered():
    path_like = {f"--{opt.name}" for opt in OPTIONS if not opt.flag and opt.metavar in PATH_METAVARS}
    assert path_like <= set(PATH_OPTIONS), f"add to PATH_OPTIONS: {sorted(path_like - set(PATH_OPTIONS))}"
    assert set(PATH_OPTIONS) <= set(VALUES)


# -- the user's command line ---------------------------------------------------------------------


@pytest.mark.parametrize("option", sorted(PATH_OPTIONS))
def test_a_path_after_a_space_keeps_the_projects_configfile(option, project, outside, pytester):
    value = PATH_OPTIONS[option](outside)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", option, value, timeout=120)
    out = result.stdout.str()
    assert f"rootdir: {project}" in out, out
    assert "configfile: pytest.ini" in out, out
    assert f"command line re-read with {option}={value}" in out, out
    assert f"ROOT {project} INI {project / 'pytest.ini'}" in out, out
    result.assert_outcomes(passed=1)  # the trap outside testpaths was not collected


def test_the_equals_form_needs_no_rerun(project, outside, pytester):
    value = PATH_OPTIONS["--vllm-model"](outside)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--vllm-model={value}", timeout=120)
    assert "configfile: pytest.ini" in result.stdout.str()
    assert "re-read" not in result.stdout.str()
    result.assert_outcomes(passed=1)


def test_the_rerun_is_the_same_process_and_its_children_do_not_inherit_the_marker(project, outside, pytester):
    value = PATH_OPTIONS["--vllm-model"](outside)
    (project / "tests" / "test_pid.py").write_text(
        "import os\n"
        "def test_pid():\n"
        f"    assert os.environ.get({cmdline.REJOINED_VAR!r}) is None\n"
        "    print('PID', os.getpid())\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "--vllm-model", value, "tests/test_pid.py"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    text = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, text
    assert f"PID {proc.pid}" in text, text  # execv: the pid the caller waits on is the run's own


def test_pytest_main_with_a_split_path_is_refused_with_the_fix_in_under_2_s(project, outside, pytester):
    value = PATH_OPTIONS["--vllm-model"](outside)
    start = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider", "--vllm-model", value)  # in process: pytest.main()
    took = time.monotonic() - start
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"fix: write --vllm-model={value}" in err, err
    assert "given to pytest.main()" in err
    assert took < 2.0, took


def test_a_split_path_in_pytest_addopts_is_refused_with_the_fix(project, outside, pytester, monkeypatch):
    value = PATH_OPTIONS["--vllm-results-dir"](outside)
    monkeypatch.setenv("PYTEST_ADDOPTS", f"--vllm-results-dir {value}")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "in PYTEST_ADDOPTS" in err and f"fix: write --vllm-results-dir={value}" in err, err


def test_a_value_that_is_not_a_path_changes_nothing(project, pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vllm-endpoint", "chat", timeout=120)
    assert "re-read" not in result.stdout.str()
    result.assert_outcomes(passed=1)


def test_python_options_survive_the_rerun(project, outside, pytester):
    value = PATH_OPTIONS["--vllm-model"](outside)
    (project / "tests" / "test_flags.py").write_text("import sys\ndef test_flags():\n    assert sys.flags.dev_mode\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--vllm-model",
            value,
            "tests/test_flags.py",
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, out.decode()
    assert b"re-read" in out


# -- a value that starts with "-", after a space -----------------------------------------------


def test_a_dash_value_after_a_space_is_refused_with_the_equals_form(pytester):
    start = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vllm-serve-args", "--enforce-eager", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "--vllm-serve-args --enforce-eager: --vllm-serve-args takes a value" in err, err
    assert "fix: write it joined with '=': --vllm-serve-args=--enforce-eager" in err, err
    assert time.monotonic() - start < 15


def test_the_same_for_the_sbatch_options(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vllm-slurm-opt", "--nodes=2", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "fix: write it joined with '=': --vllm-slurm-opt=--nodes=2" in result.stderr.str()


def test_a_dash_value_option_left_without_a_value_says_so(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vllm-serve-args", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--vllm-serve-args was given without a value" in result.stderr.str()
    assert "fix: write --vllm-serve-args=VALUE" in result.stderr.str()


def test_the_dash_value_fix_quotes_the_value_meant():
    assert "--vllm-serve-args='-x y'" in cmdline.missing_value_fix("--vllm-serve-args", ["--vllm-serve-args", "-x y"])
    assert cmdline.missing_value_fix("--vllm-serve-args", ["-q", "--vllm-serve-args"]).endswith(
        "--vllm-serve-args=VALUE"
    )
