"""scikit-learn figures on the Chicago crash-type split, for comparison with Vigie's model.

Trains HistGradientBoosting (default parameters) and a random forest on
data/chicago/X_train.csv + y_train.csv and reports, on the fixed holdout X_test.csv + y_test.csv,
the metrics `vigie train` reports, as `vigie train` gets them: the F1-best threshold chosen on a
validation slice of the training data (20%, stratified, as models/chicago-crash-type.toml), then
the model refitted on every training row with that threshold; never anything on the holdout.

The files are read as they are (text codes). CRASH_DATE is the events' time, not a feature.
Text columns of at most 255 codes are pandas categories (HistGradientBoosting's native
categorical support, its default since scikit-learn 1.4); STREET_NAME (885 streets) is
ordinal-encoded. The random forest sees ordinal codes everywhere and the median for missing
numbers. Unknown holdout codes are missing for both.

    python3 benchmarks/sklearn_chicago.py [--json out.json]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import train_test_split

# The threshold rule and the metrics of the BAAC comparison (same folder).
from sklearn_baseline import best_f1_threshold, metrics, report

DATA = Path(__file__).resolve().parent.parent / "data" / "chicago"
POSITIVE = "INJURY AND / OR TOW DUE TO CRASH"


def encode(train, test, native):
    """Text columns as categories (native, when they have at most 255 codes) or ordinal codes."""
    train, test = train.drop(columns=["CRASH_DATE"]), test.drop(columns=["CRASH_DATE"])
    for column in train.columns:
        if train[column].dtype != object:
            continue
        codes = sorted(train[column].dropna().unique())
        dtype = pd.CategoricalDtype(codes)
        if native and len(codes) <= 255:
            train[column] = train[column].astype(dtype)
            test[column] = test[column].astype(dtype)
        else:
            train[column] = train[column].astype(dtype).cat.codes.replace(-1, np.nan).astype(float)
            test[column] = test[column].astype(dtype).cat.codes.replace(-1, np.nan).astype(float)
    if not native:
        medians = train.median()
        train, test = train.fillna(medians), test.fillna(medians)
    return train, test


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    x_train = pd.read_csv(DATA / "X_train.csv", keep_default_na=False, na_values=[""])
    y_train = (pd.read_csv(DATA / "y_train.csv")["CRASH_TYPE"] == POSITIVE).astype(int).to_numpy()
    x_test = pd.read_csv(DATA / "X_test.csv", keep_default_na=False, na_values=[""])
    y_test = (pd.read_csv(DATA / "y_test.csv")["CRASH_TYPE"] == POSITIVE).astype(int).to_numpy()

    models = {
        "HistGradientBoosting (default)": (lambda: HistGradientBoostingClassifier(random_state=0), True),
        "RandomForest (default)": (lambda: RandomForestClassifier(n_jobs=2, random_state=0), False),
    }
    rows = []
    for name, (make, native) in models.items():
        train, test = encode(x_train, x_test, native)
        x_fit, x_val, y_fit, y_val = train_test_split(
            train, y_train, test_size=0.2, random_state=42, stratify=y_train
        )
        model = make()
        model.fit(x_fit, y_fit)
        threshold = best_f1_threshold(y_val, model.predict_proba(x_val)[:, 1])
        # Refitted on every training row, the threshold kept: what `vigie train` does.
        model = make()
        start = time.perf_counter()
        model.fit(train, y_train)
        fit_s = time.perf_counter() - start
        p_test = model.predict_proba(test)[:, 1]
        rows.append({"model": name, "threshold_rule": "F1-best on validation", "fit_s": fit_s, **metrics(y_test, p_test, threshold)})

    report(rows, args.json)


if __name__ == "__main__":
    main()
