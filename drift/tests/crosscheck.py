"""Expected values of vigie-drift's statistics, computed by scipy and numpy on the same histograms.

Run from the repository root to regenerate drift/tests/crosscheck.json (the Rust test
drift/tests/crosscheck.rs compares every statistic with these values):

    python3 drift/tests/crosscheck.py > drift/tests/crosscheck.json

Needs numpy and scipy. The cases are seeded, so the file only changes with the libraries.
"""

import json

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance


def case(rng, bins, ref_total, cur_total, shift, zeros):
    weights = rng.dirichlet(np.ones(bins) * 2.0)
    moved = np.roll(weights, shift) * 0.3 + weights * 0.7
    ref = rng.multinomial(ref_total, weights)
    cur = rng.multinomial(cur_total, moved)
    for z in zeros:
        ref[z % bins] = 0
    positions = np.cumsum(rng.uniform(0.5, 3.0, bins)) - 10.0
    return ref, cur, positions


def expected(ref, cur, positions):
    p, q = ref / ref.sum(), cur / cur.sum()
    pp, qq = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    used = (ref + cur) > 0
    idx = np.arange(len(ref))
    d = stats.ks_2samp(np.repeat(idx, ref), np.repeat(idx, cur)).statistic
    n, m = ref.sum(), cur.sum()
    mean = np.average(positions, weights=p)
    std = np.sqrt(np.average((positions - mean) ** 2, weights=p))
    return {
        "tvd": 0.5 * np.abs(p - q).sum(),
        "correlation": np.corrcoef(p, q)[0, 1],
        "psi": ((qq - pp) * np.log(qq / pp)).sum(),
        "js_distance": distance.jensenshannon(p, q, base=2),
        "wasserstein": stats.wasserstein_distance(positions, positions, ref, cur) / std,
        "chi_square_p": stats.chi2_contingency(np.array([ref[used], cur[used]]), correction=False).pvalue,
        "ks_statistic": d,
        "ks_p": stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * d),
    }


def main():
    rng = np.random.default_rng(20261122)
    shapes = [
        (2, 500, 400, 1, []),
        (3, 10_000, 2_000, 1, []),
        (5, 76_000, 16_000, 0, []),
        (8, 2_000, 300, 2, [3]),
        (12, 38_000, 16_000, 0, [0, 11]),
        (12, 38_000, 16_000, 3, []),
        (20, 1_000, 1_000, 5, [4, 9]),
        (23, 76_576, 16_410, 0, [0, 22]),
        (23, 76_576, 16_410, 1, []),
        (30, 5_000, 700, 7, [1, 2, 3]),
        (52, 76_576, 5_000, 0, [10, 20, 30]),
        (52, 76_576, 5_000, 13, []),
    ]
    cases = []
    for bins, ref_total, cur_total, shift, zeros in shapes:
        ref, cur, positions = case(rng, bins, ref_total, cur_total, shift, zeros)
        cases.append({
            "reference": ref.tolist(),
            "current": cur.tolist(),
            "positions": positions.tolist(),
            "expected": {k: float(v) for k, v in expected(ref, cur, positions).items()},
        })
    print(json.dumps({"scipy": scipy.__version__, "numpy": np.__version__, "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
