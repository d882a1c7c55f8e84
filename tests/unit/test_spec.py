"""ServerSpec: keying, flag extraction, and every parallelism rule with its message."""

from __future__ import annotations

import pytest

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.spec import RuleError, ServerSpec, extract_parallel_flags


def test_equal_specs_share_a_key_and_different_ones_do_not():
    assert ServerSpec().key() == ServerSpec().key()
    assert ServerSpec(env=(("A", "1"), ("B", "2"))).key() == ServerSpec(env=(("B", "2"), ("A", "1"))).key()
    variants = [
        ServerSpec(model="m"),
        ServerSpec(tp=2),
        ServerSpec(pp=2),
        ServerSpec(dp=2),
        ServerSpec(ep=True),
        ServerSpec(backend="ray"),
        ServerSpec(args=("--x",)),
        ServerSpec(env=(("A", "1"),)),
        ServerSpec(served_model_name="n"),
    ]
    keys = {v.key() for v in variants} | {ServerSpec().key()}
    assert len(keys) == len(variants) + 1


def test_spec_is_immutable_and_hashable():
    spec = ServerSpec(tp=2)
    with pytest.raises(Exception):
        spec.tp = 4  # type: ignore[misc]
    assert {spec: 1}[ServerSpec(tp=2)] == 1


@pytest.mark.parametrize(
    "args, found, rest",
    [
        (["-tp", "4", "--x"], {"tp": "4"}, ("--x",)),
        (["--tensor-parallel-size=2"], {"tp": "2"}, ()),
        (["--pipeline-parallel-size", "2", "--data-parallel-size=4"], {"pp": "2", "dp": "4"}, ()),
        (["--enable-expert-parallel"], {"ep": True}, ()),
        (
            ["--distributed-executor-backend=ray", "--max-model-len", "10"],
            {"backend": "ray"},
            ("--max-model-len", "10"),
        ),
    ],
)
def test_parallel_flags_are_lifted_out_of_args_in_both_spellings(args, found, rest):
    assert extract_parallel_flags(args) == (found, rest)


def test_build_merges_keywords_and_args_and_rejects_conflicts():
    spec = ServerSpec.build(args=["-tp", "2", "--foo"], dp=2)
    assert (spec.tp, spec.dp, spec.args) == (2, 2, ("--foo",))
    assert ServerSpec.build(tp=2, args=["--tensor-parallel-size", "2"]).tp == 2
    with pytest.raises(ConfigError, match="given twice"):
        ServerSpec.build(tp=4, args=["-tp", "2"])


@pytest.mark.parametrize("field", ["tp", "pp", "dp"])
@pytest.mark.parametrize("value", [0, -1, "0"])
def test_zero_or_negative_sizes_are_rejected(field, value):
    with pytest.raises(RuleError, match="sizes are positive") as info:
        ServerSpec(**{field: value})
    assert f"{field}=" in str(info.value) and "fix:" in str(info.value)


@pytest.mark.parametrize("value", ["two", 1.5, True, None])
def test_non_integer_sizes_are_rejected(value):
    with pytest.raises(ConfigError, match="positive integer"):
        ServerSpec(tp=value)  # type: ignore[arg-type]


def test_pp_and_ep_cannot_be_combined():
    with pytest.raises(RuleError, match=r"PP and EP cannot be combined"):
        ServerSpec(pp=2, ep=True)


def test_pp_means_no_dp():
    with pytest.raises(RuleError, match=r"PP > 1 means no DP"):
        ServerSpec(pp=2, dp=2)


def test_pp_selects_the_mp_backend():
    assert ServerSpec(pp=2).resolve(2).backend == "mp"
    assert "--distributed-executor-backend" in ServerSpec(pp=2).serve_args(ServerSpec(pp=2).resolve(2))
    with pytest.raises(RuleError, match=r"PP > 1 selects the mp backend"):
        ServerSpec(pp=2, backend="ray")


def test_unknown_backend_is_rejected():
    with pytest.raises(ConfigError, match="unknown distributed executor backend 'slurm'"):
        ServerSpec(backend="slurm")


def test_ep_size_is_derived_and_never_passed():
    layout = ServerSpec(tp=2, dp=4, ep=True).resolve(8)
    assert layout.ep_size == 8
    args = ServerSpec(tp=2, dp=4, ep=True).serve_args(layout)
    assert "--enable-expert-parallel" in args
    assert not any("expert-parallel-size" in a for a in args)
    assert "EP size 8 = TP x DP" in layout.describe()


def test_total_gpus_must_fit_the_visible_ones():
    with pytest.raises(RuleError, match=r"must not exceed the visible GPUs") as info:
        ServerSpec(tp=2, dp=2).resolve(2)
    assert "TP=2 x PP=1 x DP=2 = 4 GPU(s), but only 2 are visible" in str(info.value)


def test_dp_auto_fills_the_visible_gpus():
    assert ServerSpec(tp=2, dp="auto").resolve(8).dp == 4
    assert ServerSpec(tp=2, pp=2, dp="auto").resolve(8).dp == 1
    with pytest.raises(RuleError, match="cannot hold one"):
        ServerSpec(tp=4, dp="auto").resolve(2)
    with pytest.raises(RuleError, match="needs a GPU count"):
        ServerSpec(dp="auto").resolve(None)


def test_tp_must_divide_a_node():
    with pytest.raises(RuleError, match="TP must divide the GPUs of one node"):
        ServerSpec(tp=3).resolve(8)
    with pytest.raises(RuleError, match="TP must fit in one node"):
        ServerSpec(tp=16).resolve(32, gpus_per_node=8)


def test_cpu_launchers_skip_gpu_rules_but_keep_static_ones():
    assert ServerSpec(tp=2).resolve(None).world_size == 2
    with pytest.raises(RuleError):
        ServerSpec(pp=2, ep=True).resolve(None)


def test_exact_serve_args_for_a_full_layout():
    spec = ServerSpec(tp=4, pp=2, backend="mp", args=("--max-model-len", "4096"))
    assert spec.serve_args(spec.resolve(8)) == [
        "--tensor-parallel-size",
        "4",
        "--pipeline-parallel-size",
        "2",
        "--distributed-executor-backend",
        "mp",
        "--max-model-len",
        "4096",
    ]


def test_describe_never_shows_env_values():
    text = ServerSpec(env=(("HF_TOKEN", "hf_secret"),)).describe()
    assert "HF_TOKEN" in text and "hf_secret" not in text


# -- property-based: any input either builds a valid layout or fails with a ConfigError ----------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

sizes = st.one_of(st.integers(min_value=-3, max_value=17), st.sampled_from(["2", "x", "", "auto", None, 1.5, True]))


@settings(max_examples=500, deadline=None)
@given(
    tp=sizes,
    pp=sizes,
    dp=sizes,
    ep=st.one_of(st.booleans(), st.sampled_from(["yes", "no", "maybe", None])),
    backend=st.sampled_from([None, "mp", "ray", "slurm", ""]),
    visible=st.one_of(st.none(), st.integers(min_value=0, max_value=16)),
)
def test_any_layout_is_valid_or_a_clear_error(tp, pp, dp, ep, backend, visible):
    kwargs = {k: v for k, v in {"tp": tp, "pp": pp, "dp": dp, "ep": ep, "backend": backend}.items() if v is not None}
    try:
        spec = ServerSpec(**kwargs)
        layout = spec.resolve(visible)
    except ConfigError as exc:
        assert str(exc)  # a message, and a RuleError names its rule
        if isinstance(exc, RuleError):
            assert exc.rule and "fix:" in str(exc)
        return
    # Whatever passed obeys every rule.
    assert layout.tp >= 1 and layout.pp >= 1 and layout.dp >= 1
    assert not (layout.pp > 1 and layout.ep)
    assert not (layout.pp > 1 and layout.dp > 1)
    if layout.pp > 1:
        assert layout.backend == "mp"
    if visible is not None:
        assert layout.world_size <= visible
        assert visible == 0 or visible % layout.tp == 0
    assert layout.ep_size == (layout.tp * layout.dp if layout.ep else None)
    args = spec.serve_args(layout)
    assert ("--enable-expert-parallel" in args) == layout.ep
