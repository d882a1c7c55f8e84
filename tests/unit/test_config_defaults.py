"""Each setting's default is written once: on its settings dataclass, or on its Opt when no
field holds it; the help text that states a default says the same value."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pytest_vllm_serve import config
from pytest_vllm_serve.bench.settings import BenchSettings


@pytest.mark.parametrize("opt", [o for o in config.OPTIONS if o.default is config.FIELD], ids=lambda o: o.name)
def test_a_field_default_comes_from_its_dataclass(opt):
    name = opt.dest.removeprefix("vllm_")
    fields = {f.name: f.default for cls in (config.Settings, BenchSettings) for f in dataclasses.fields(cls)}
    assert config.default(opt) == config.cli_text(fields[name])


@pytest.mark.parametrize("opt", [o for o in config.OPTIONS if config.default(o) is not None], ids=lambda o: o.name)
def test_the_help_states_the_default_there_is(opt):
    stated = re.search(r"Default:? ([^\s;(]+)", opt.help)
    assert stated, f"--{opt.name}: its help does not say its default"
    assert stated.group(1).rstrip(".:").removeprefix("./") == config.default(opt)


def test_no_literal_default_repeats_a_field():
    fields = {f.name for cls in (config.Settings, BenchSettings) for f in dataclasses.fields(cls)}
    repeated = [o.name for o in config.OPTIONS if isinstance(o.default, str) and o.dest.removeprefix("vllm_") in fields]
    assert not repeated, f"give these default=FIELD: {repeated}"


def test_cli_text():
    assert config.cli_text((1, 2.0, float("inf"))) == "1,2,inf"
    assert config.cli_text(0.5) == "0.5"
