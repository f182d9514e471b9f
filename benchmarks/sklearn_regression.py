"""scikit-learn figures on the London Fire Brigade split, for comparison with `vigie train`.

Fits HistGradientBoostingRegressor with its defaults and a RandomForestRegressor (the seed
project's approach) on data/lfb/X_train.csv + y_train.csv, and reports on the fixed holdout
X_test.csv + y_test.csv the figures `vigie train` reports: MAE, RMSE, R-squared, median absolute
error, and the share of estimates more than 60 s under the truth. Text categories are coded by
their position in the sorted list of values the data holds, as Vigie codes them by their
position in the spec (which lists them sorted), so both see the same numbers.

    python3 benchmarks/sklearn_regression.py [--json out.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.metrics import (
    mean_absolute_error,
    mean_squared_error,
    median_absolute_error,
    r2_score,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "lfb"
MARGIN = 60.0


def load():
    x_train = pd.read_csv(DATA / "X_train.csv", keep_default_na=False)
    x_test = pd.read_csv(DATA / "X_test.csv", keep_default_na=False)
    y_train = pd.read_csv(DATA / "y_train.csv").iloc[:, 0].to_numpy(dtype=float)
    y_test = pd.read_csv(DATA / "y_test.csv").iloc[:, 0].to_numpy(dtype=float)
    for column in x_train.columns:
        if pd.api.types.is_numeric_dtype(x_train[column]):
            continue
        values = sorted(set(x_train[column].str.strip()) | set(x_test[column].str.strip()))
        code = {v: i for i, v in enumerate(values)}
        x_train[column] = x_train[column].str.strip().map(code)
        x_test[column] = x_test[column].str.strip().map(code)
    return x_train, y_train, x_test, y_test


def figures(y, p):
    residual = y - p
    return {
        "mae": mean_absolute_error(y, p),
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "r2": r2_score(y, p),
        "median_absolute_error": median_absolute_error(y, p),
        "share_underestimated": float(np.mean(residual > MARGIN)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    x_train, y_train, x_test, y_test = load()
    models = [
        ("scikit-learn HistGradientBoostingRegressor (defaults)", HistGradientBoostingRegressor(random_state=0)),
        ("scikit-learn RandomForestRegressor (100 trees, the seed's approach)", RandomForestRegressor(n_estimators=100, n_jobs=-1, random_state=0)),
    ]
    rows = []
    print(f"| model | MAE | RMSE | R2 | median AE | share > {MARGIN:g} s under | fit (s) |")
    print("|---|---|---|---|---|---|---|")
    for label, model in models:
        start = time.perf_counter()
        model.fit(x_train, y_train)
        fit = time.perf_counter() - start
        f = figures(y_test, model.predict(x_test))
        f.update(model=label, fit_seconds=fit)
        rows.append(f)
        print(
            f"| {label} | {f['mae']:.2f} | {f['rmse']:.2f} | {f['r2']:.4f} | "
            f"{f['median_absolute_error']:.2f} | {f['share_underestimated']:.4f} | {fit:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
