"""The dataset checksum is defined on values, not on storage types: floats are hashed as little-endian float64
and flags as bool, so the same transitions stored as float32 (Minari's usual dtype), big-endian float64, or 0/1
integer flags hash alike. Kills the mutants of store.checksum_episodes that drop the casts, which the pinned
value in test_data.py (float64 and bool arrays only) cannot see."""

import numpy as np

from suite.data import store


def _episodes(float_dtype, flag_dtype):
    eps = []
    for e, n in enumerate((3, 2)):
        # multiples of 1/8: exact in float32, so every dtype below holds the same values
        obs = (np.arange((n + 1) * 2).reshape(n + 1, 2) / 8.0 + e).astype(float_dtype)
        eps.append({"observations": obs, "actions": (np.linspace(-1, 1, n)[:, None] + 0.25 * e).astype(float_dtype),
                    "rewards": (np.arange(n) * 0.5 - e).astype(float_dtype),
                    "terminations": np.array([0] * (n - 1) + [e == 0]).astype(flag_dtype),
                    "truncations": np.array([0] * (n - 1) + [e == 1]).astype(flag_dtype)})
    return eps


def test_checksum_does_not_depend_on_storage_dtypes():
    ref = store.checksum_episodes(_episodes(np.float64, bool))
    for float_dtype in (np.float32, ">f8", np.float16):
        assert store.checksum_episodes(_episodes(float_dtype, bool)) == ref, float_dtype
    for flag_dtype in (np.uint8, np.int64):
        assert store.checksum_episodes(_episodes(np.float64, flag_dtype)) == ref, flag_dtype
