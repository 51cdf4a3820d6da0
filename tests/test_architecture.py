"""Architecture catalog, N -> shape, parameter and FLOP counts (golden values from the papers)."""

import math

import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.simulate.architecture import CATALOG, arch_names, get_arch, shape_for_params

# (name, total params, active params) from the model cards / papers
PUBLISHED = [
    ("gpt3-175b", 174.6e9, None),
    ("llama2-7b", 6.74e9, None),
    ("llama2-70b", 68.98e9, None),
    ("llama3-8b", 8.03e9, None),
    ("llama3-70b", 70.55e9, None),
    ("llama3-405b", 405.8e9, None),
    ("mixtral-8x7b", 46.7e9, 12.9e9),
    ("deepseek-v3", 671e9, 37e9),
    ("megatron-22b", 22.0e9, None),
    ("megatron-175b", 175e9, None),
    ("megatron-530b", 530e9, None),
    ("megatron-1t", 1.0e12, None),
]


def test_catalog_names():
    assert set(arch_names()) == {p[0] for p in PUBLISHED}


@pytest.mark.parametrize("name,total,active", PUBLISHED)
def test_published_parameter_counts(name, total, active):
    arch = get_arch(name)
    assert arch.params() == pytest.approx(total, rel=0.015)
    if active is not None:
        assert arch.active_params() == pytest.approx(active, rel=0.03)
    else:
        assert arch.active_params() == arch.params()


@pytest.mark.parametrize("name", ["megatron-22b", "megatron-175b", "megatron-530b", "megatron-1t"])
def test_korthikanti_table3_shapes(name):
    table3 = {
        "megatron-22b": (6144, 64, 48), "megatron-175b": (12288, 96, 96),
        "megatron-530b": (20480, 128, 105), "megatron-1t": (25600, 160, 128),
    }
    h, a, L = table3[name]
    arch = get_arch(name)
    assert (arch.d_model, arch.n_heads, arch.n_layers, arch.ffn_hidden) == (h, a, L, 4 * h)
    assert arch.vocab_size == 51200 and arch.seq_len == 2048 and arch.head_dim == h // a


@pytest.mark.parametrize("name", ["megatron-22b", "gpt3-175b", "megatron-1t"])
def test_megatron_flops_match_narayanan_closed_form(name):
    """72 B s L h^2 (1 + s/6h + V/(12 L h)) per sequence, i.e. per token / s."""
    a = get_arch(name)
    L, h, s, V = a.n_layers, a.d_model, a.seq_len, a.vocab_size
    closed = 72 * L * h * h * (1 + s / (6 * h) + V / (12 * L * h))
    assert a.megatron_flops_per_token() == pytest.approx(closed, rel=1e-12)


def test_palm_convention_is_6n_plus_attention():
    a = get_arch("llama2-7b")
    n = a.params() - a.embedding_params()
    assert a.palm_flops_per_token() == pytest.approx(6 * n + 12 * 32 * 32 * 128 * 4096)


def test_moe_flops_use_active_params():
    a = get_arch("mixtral-8x7b")
    assert 6 * a.active_params() < a.megatron_flops_per_token() < 6 * a.params()


def test_gqa_reduces_attention_params():
    a = get_arch("llama2-70b")
    assert a.attention_params_per_layer() == 8192 * 8192 * 2 + 2 * 8192 * 8 * 128


def test_unknown_arch_is_input_error():
    with pytest.raises(InputError):
        get_arch("gpt-5")


@pytest.mark.parametrize("n", [1e9, 7e9, 70e9, 405e9, 1e12])
def test_shape_for_params_is_close_and_sane(n):
    a = shape_for_params(n)
    assert abs(math.log(a.params() / n)) < 0.05
    assert a.d_model % 128 == 0 and a.d_model == a.n_heads * a.head_dim
    assert a.n_heads % a.n_kv_heads == 0
    assert 60 <= a.d_model / a.n_layers <= 200
    if a.n_heads >= 16:
        assert a.n_heads % 8 == 0 and a.n_kv_heads == 8


def test_shape_for_params_rejects_nonpositive():
    with pytest.raises(InputError):
        shape_for_params(0)


def test_catalog_is_frozen():
    with pytest.raises(Exception):  # noqa: B017 - pydantic ValidationError on frozen models
        CATALOG["llama2-7b"].n_layers = 3
