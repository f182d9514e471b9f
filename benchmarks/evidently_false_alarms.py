"""False alarms of Evidently 0.7's DataDriftPreset (its defaults) on windows of the BAAC holdout
drawn at random: no drift at all, so every flagged column is a false alarm. The figures sit
beside Vigie's in benchmarks/README.md ("Drift decisions beyond the noise"), measured on windows
drawn the same way (100 per size, rows without replacement, the reference X_train).

    python3 benchmarks/evidently_false_alarms.py [WINDOWS] [SIZE ...]

Column types follow models/baac-severity.toml (numerical vs categorical).
"""

import sys
import time
import warnings

warnings.filterwarnings("ignore")

NUMERICAL = ["year_acc", "victim_age", "vma", "jour", "lat", "long", "hour", "nb_victim", "nb_vehicules"]


def main():
    windows = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    sizes = [int(s) for s in sys.argv[2:]] or [200, 500, 1000, 5000]
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_csv("data/baac/X_train.csv")
    holdout = pd.read_csv("data/baac/X_test.csv")
    categorical = [c for c in reference.columns if c not in NUMERICAL]
    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=categorical)
    reference_data = Dataset.from_pandas(reference, data_definition=definition)
    rng = np.random.default_rng(20)
    columns = len(reference.columns)
    print("size  windows  column alarms (rate)  data-set alerts  seconds per window")
    for size in sizes:
        alarms, alerts = 0, 0
        start = time.perf_counter()
        for _ in range(windows):
            rows = rng.choice(len(holdout), size=size, replace=False)
            current = Dataset.from_pandas(holdout.iloc[rows], data_definition=definition)
            result = Report([DataDriftPreset()]).run(
                current_data=current, reference_data=reference_data
            ).dict()
            for metric in result["metrics"]:
                kind = metric.get("config", {}).get("type", "")
                if kind.endswith("DriftedColumnsCount"):
                    value = metric["value"]
                    drifted = int(value["count"])
                    alarms += drifted
                    # DataDriftPreset's data-set drift: at least half the columns drifted.
                    alerts += int(drifted >= 0.5 * columns)
        seconds = (time.perf_counter() - start) / windows
        rate = alarms / (windows * columns)
        print(f"{size:>5} {windows:>8} {alarms:>8} ({rate:.4f}) {alerts:>8} {seconds:>10.2f}")


if __name__ == "__main__":
    main()
