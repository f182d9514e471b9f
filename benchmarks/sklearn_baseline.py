"""scikit-learn figures on the BAAC 2021 split, for comparison with `vigie train`.

Trains the models the student projects used (random forests, HistGradientBoosting) on
data/baac/X_train.csv + y_train.csv and reports the same metrics as `vigie train`
on the fixed holdout X_test.csv + y_test.csv, twice per model: at the 0.5 threshold and at the
F1-best threshold chosen on a validation slice of the training data (as Vigie does), never on
the holdout. Prints a Markdown table and writes it as JSON to the path given by --json.

    python3 benchmarks/sklearn_baseline.py [--json out.json]
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

DATA = Path(__file__).resolve().parent.parent / "data" / "baac"


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


def report(rows, json_path):
    """Prints the rows as a Markdown table, and writes them as JSON to `json_path` if given."""
    print("| model | threshold | ROC AUC | PR AUC | F1 | precision | recall | accuracy | Brier | fit (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['threshold_rule']} ({r['threshold']:.3f}) | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} | "
            f"{r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {r['accuracy']:.4f} | {r['brier']:.4f} | {r['fit_s']:.1f} |"
        )
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    x_train = pd.read_csv(DATA / "X_train.csv")
    y_train = pd.read_csv(DATA / "y_train.csv")["grav"].to_numpy()
    x_test = pd.read_csv(DATA / "X_test.csv")
    y_test = pd.read_csv(DATA / "y_test.csv")["grav"].to_numpy()
    # The same validation share as models/baac-severity.toml (20%, stratified).
    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train, y_train, test_size=0.2, random_state=42, stratify=y_train
    )

    models = {
        "RandomForest (default)": lambda: RandomForestClassifier(n_jobs=2, random_state=0),
        "RandomForest (300 trees, depth 15; mlops-road-accidents seed)": lambda: RandomForestClassifier(
            n_estimators=300, max_depth=15, n_jobs=2, random_state=0
        ),
        "HistGradientBoosting (default)": lambda: HistGradientBoostingClassifier(random_state=0),
    }
    rows = []
    for name, make in models.items():
        # Fixed threshold 0.5, fitted on the whole training set: the figures the seeds published.
        model = make()
        start = time.perf_counter()
        model.fit(x_train, y_train)
        fit_s = time.perf_counter() - start
        p_test = model.predict_proba(x_test)[:, 1]
        rows.append({"model": name, "threshold_rule": "0.5", "fit_s": fit_s, **metrics(y_test, p_test, 0.5)})

        # Threshold chosen on a validation slice, as Vigie does.
        model = make()
        start = time.perf_counter()
        model.fit(x_fit, y_fit)
        fit_s = time.perf_counter() - start
        threshold = best_f1_threshold(y_val, model.predict_proba(x_val)[:, 1])
        p_test = model.predict_proba(x_test)[:, 1]
        rows.append(
            {"model": name, "threshold_rule": "F1-best on validation", "fit_s": fit_s, **metrics(y_test, p_test, threshold)}
        )

    report(rows, args.json)


if __name__ == "__main__":
    main()
