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
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

DATA = Path(__file__).resolve().parent.parent / "data" / "chicago"
POSITIVE = "INJURY AND / OR TOW DUE TO CRASH"


def best_f1_threshold(y, p):
    order = np.argsort(-p)
    y_sorted = y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    f1 = 2 * tp / (tp + fp + y.sum())
    i = int(np.argmax(f1))
    return float(p[order][i])


def metrics(y, p, threshold):
    pred = (p >= threshold).astype(int)
    return {
        "roc_auc": roc_auc_score(y, p),
        "pr_auc": average_precision_score(y, p),
        "f1": f1_score(y, pred),
        "precision": precision_score(y, pred),
        "recall": recall_score(y, pred),
        "accuracy": accuracy_score(y, pred),
        "brier": brier_score_loss(y, p),
        "threshold": threshold,
    }


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

    print("| model | threshold | ROC AUC | PR AUC | F1 | precision | recall | accuracy | Brier | fit (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['threshold_rule']} ({r['threshold']:.3f}) | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} | "
            f"{r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {r['accuracy']:.4f} | {r['brier']:.4f} | {r['fit_s']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
