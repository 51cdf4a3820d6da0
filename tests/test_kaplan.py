"""Kaplan et al. 2020 laws and the total <-> non-embedding parameter converters."""

import math

import numpy as np
import pytest

from scaling_planner.base.errors import InputError
from scaling_planner.laws import kaplan


# Check values from shared/reference/scaling_laws.md §3.1, printed to 4 decimals (5 significant
# digits); abs 5e-5 is half a unit in the last printed digit, so the test means "same printed value".
def test_single_factor_params_law():
    assert kaplan.loss_from_params(1e9) == pytest.approx(2.3756, abs=5e-5)


def test_single_factor_tokens_law():
    assert kaplan.loss_from_tokens(2e10) == pytest.approx(2.1183, abs=5e-5)


def test_joint_law_table2():
    assert kaplan.loss(1e9, 2e10) == pytest.approx(2.3739, abs=5e-5)


def test_joint_law_limits_are_the_single_factor_forms_with_table2_constants():
    # D -> inf gives (N_c/N)^α_N exactly (Kaplan Eq. 1.5 reduces to Eq. 1.1 with Table 2 values).
    N = np.array([1e7, 1e9, 1e11])
    got = kaplan.loss(N, 1e300)
    want = (kaplan.JOINT_N_C / N) ** kaplan.JOINT_ALPHA_N
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_vectorised_broadcast():
    out = kaplan.loss(np.array([1e8, 1e9])[:, None], np.array([1e10, 1e11, 1e12])[None, :])
    assert out.shape == (2, 3)
    assert np.all(np.diff(out, axis=0) < 0) and np.all(np.diff(out, axis=1) < 0)


def test_embedding_params_exact_shape():
    # GPT-2 small: vocab 50257, d_model 768, learned positions n_ctx 1024 (Kaplan §2.1 convention).
    assert kaplan.embedding_params(50257, 768, 1024) == (50257 + 1024) * 768
    n_total = kaplan.total_params_from_shape(85e6, 50257, 768, 1024)
    assert kaplan.nonembedding_params_from_shape(n_total, 50257, 768, 1024) == pytest.approx(85e6, rel=1e-15)


def test_pearce_song_forward_value():
    # 1e9 non-embedding params: cube root 1000, so N_total = 1e9 + 47491·1000 exactly.
    assert kaplan.total_params_pearce_song(1e9) == pytest.approx(1e9 + 47_491_000, rel=1e-14)


def test_pearce_song_inverse_round_trips():
    N = np.logspace(3, 13, 41)
    back = kaplan.nonembedding_params_pearce_song(kaplan.total_params_pearce_song(N))
    np.testing.assert_allclose(back, N, rtol=1e-12)  # Newton converges to machine precision


def test_pearce_song_inverse_scalar_and_embedding_share_shrinks():
    small = kaplan.nonembedding_params_pearce_song(1e8)
    big = kaplan.nonembedding_params_pearce_song(1e12)
    assert 0 < small < 1e8 and 0 < big < 1e12
    assert 1 - small / 1e8 > 1 - big / 1e12  # embeddings matter most for small models


@pytest.mark.parametrize("bad", [0.0, -1e9, math.nan, math.inf, "abc"])
def test_bad_params_raise_input_error(bad):
    with pytest.raises(InputError, match=r"nonembedding_params.*> 0"):
        kaplan.loss_from_params(bad)


@pytest.mark.parametrize("bad", [0.0, -5.0, math.nan])
def test_bad_tokens_raise_input_error(bad):
    with pytest.raises(InputError, match="tokens"):
        kaplan.loss(1e9, bad)


def test_bad_total_params_raise():
    with pytest.raises(InputError, match="total_params"):
        kaplan.nonembedding_params_pearce_song(np.array([1e9, -1.0]))
    with pytest.raises(InputError, match="total_params"):
        kaplan.nonembedding_params_from_shape(1e6, 50257, 768)  # embeddings alone are 38.6M
    with pytest.raises(InputError, match="n_ctx"):
        kaplan.embedding_params(50257, 768, -1)
