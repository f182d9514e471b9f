"""Evidently 0.7's DataDriftPreset on two BAAC features files: the baseline `benchmarks/drift-compare`
sets beside `vigie drift-report`.

    python3 benchmarks/evidently_drift.py data/baac/X_train.csv data/baac/X_test.csv OUT.json

Column types follow models/baac-severity.toml (numerical vs categorical), so that Evidently
picks its tests for the same kinds of feature. Prints the wall time of loading and of the
report, and writes the per-column drift verdicts to OUT.json.
"""

import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")

NUMERICAL = ["year_acc", "victim_age", "vma", "jour", "lat", "long", "hour", "nb_victim", "nb_vehicules"]


def main():
    reference_path, current_path, out_path = sys.argv[1:4]
    start = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter()
    reference = pd.read_csv(reference_path)
    current = pd.read_csv(current_path)
    categorical = [c for c in reference.columns if c not in NUMERICAL]
    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=categorical)
    reference = Dataset.from_pandas(reference, data_definition=definition)
    current = Dataset.from_pandas(current, data_definition=definition)
    loaded = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    result = snapshot.dict()
    done = time.perf_counter()

    columns, summary = {}, None
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "value": metric["value"],
            }
        elif config.get("type", "").endswith("DriftedColumnsCount"):
            summary = metric["value"]
    with open(out_path, "w") as f:
        json.dump({"drifted_columns": summary, "columns": columns}, f, indent=1, default=str)
    print(f"import {imported - start:.2f} s, load {loaded - imported:.2f} s, "
          f"report {done - loaded:.2f} s, total {done - start:.2f} s")
    print(f"EVIDENTLY_SECONDS={done - imported:.4f}")


if __name__ == "__main__":
    main()
