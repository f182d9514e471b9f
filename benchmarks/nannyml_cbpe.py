"""NannyML's CBPE beside Vigie's label-free quality estimate, period by period, against the
realised ROC AUC and F1.

Both estimators see the same answers of the same replay: NannyML's CBPE (confidence-based
performance estimation) is fitted on a labelled reference replay and estimates the analysis
replay with one chunk per `period_start` (the windows Vigie reports on, so the two line up
exactly); Vigie's estimates are read from that replay's quality.jsonl. The realised figures
are computed here with scikit-learn on the analysis rows of each period.

    vigie backtest --labels ... --out REF_DIR   # labelled reference replay
    vigie backtest --labels ... --out ANA_DIR   # the replay to monitor
    python3 benchmarks/nannyml_cbpe.py --reference REF_DIR/answers.csv \\
        --analysis ANA_DIR/answers.csv --vigie ANA_DIR/quality.jsonl [--min-labels 100] [--out OUT.json]

Prints one row per period with at least --min-labels labelled events, then the mean absolute
error of each estimator, the share of periods whose realised F1 lies inside Vigie's band (and
inside NannyML's confidence band, which is +-3 sampling errors), the Pearson correlation of
each estimate with the realised figure across periods, and NannyML's fit + estimate time.
Needs `pip install nannyml scikit-learn pandas`.
"""

import argparse
import json
import math
import os
import sys
import time
import warnings

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML phones home otherwise

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, roc_auc_score

COLUMNS = ["event", "period_start", "probability", "class", "label"]


def fail(message):
    sys.exit(f"nannyml_cbpe: {message}")


def load_answers(path):
    """An answers.csv, its period_start parsed as UTC times; label may be empty (unlabelled)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing or df.empty:
        fail(f"{path}: " + (f"missing columns {missing}" if missing else "no rows"))
    df["period_start"] = pd.to_datetime(df["period_start"], utc=True, errors="coerce")
    for column in ["probability", "class", "label"]:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    bad = (df["period_start"].isna() | ~df["probability"].between(0, 1)
           | ~df["class"].isin([0, 1]) | ~(df["label"].isin([0, 1]) | df["label"].isna()))
    if bad.any():
        fail(f"{path}: {bad.sum()} malformed rows, the first at event {df.loc[bad, 'event'].iloc[0]}")
    df["class"] = df["class"].astype(int)
    return df


def load_vigie(path):
    """Vigie's estimates from quality.jsonl, by period start."""
    periods = {}
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            period = json.loads(line)
            start = pd.to_datetime(period["start"], utc=True)
            estimated = period.get("estimated") or {}
            auc, f1 = estimated.get("roc_auc") or {}, estimated.get("f1") or {}
            periods[start] = {"vigie_auc": auc.get("value"), "vigie_f1": f1.get("value"),
                              "vigie_f1_lower": f1.get("lower"), "vigie_f1_upper": f1.get("upper"),
                              "vigie_labelled": period.get("labelled")}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            fail(f"{path}:{n}: not a quality period ({e!r})")
    if not periods:
        fail(f"{path}: no periods")
    return periods


def run_nannyml(reference, analysis):
    """CBPE fitted on the reference and run on the analysis, one chunk per period_start: its
    estimates by period start, the seconds taken, whether it recalibrated the probabilities
    (isotonic, fitted on the reference, when that lowers the calibration error there) and the
    warnings it raised."""
    try:
        import nannyml
        from nannyml.chunk import Chunk, Chunker
    except ImportError as e:
        fail(f"cannot import nannyml ({e}); pip install nannyml")

    class PeriodChunker(Chunker):
        """One chunk per distinct period_start value, in time order."""

        def _split(self, data):
            return [Chunk(key=start.isoformat(), data=rows, start_datetime=start, end_datetime=start)
                    for start, rows in data.groupby("period_start", sort=True)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        cbpe = nannyml.CBPE(problem_type="classification_binary", metrics=["roc_auc", "f1"],
                            y_pred_proba="probability", y_pred="class", y_true="label",
                            chunker=PeriodChunker())
        cbpe.fit(reference.dropna(subset=["label"]))
        # Label-free: CBPE never sees the analysis labels.
        result = cbpe.estimate(analysis.drop(columns=["label"]))
        seconds = time.perf_counter() - started
    df = result.filter(period="analysis").to_df()
    estimates = {
        pd.Timestamp(start): {"nannyml_auc": auc, "nannyml_f1": f1, "nannyml_f1_lower": lo, "nannyml_f1_upper": hi}
        for start, auc, f1, lo, hi in zip(df[("chunk", "start_date")], df[("roc_auc", "value")],
                                           df[("f1", "value")], df[("f1", "lower_confidence_boundary")],
                                           df[("f1", "upper_confidence_boundary")])
    }
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return estimates, seconds, nannyml.__version__, bool(cbpe.needs_calibration), messages


def realised(rows):
    """ROC AUC (None with one class only) and F1 on a period's labelled rows."""
    y = rows["label"].astype(int)
    auc = roc_auc_score(y, rows["probability"]) if y.nunique() == 2 else None
    return auc, f1_score(y, rows["class"], zero_division=0.0)


def finite(x):
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def compare(periods, estimate, truth):
    """MAE and Pearson correlation of an estimate against the realised figure."""
    pairs = [(p[estimate], p[truth]) for p in periods if finite(p[estimate]) and finite(p[truth])]
    if not pairs:
        return {"periods": 0, "mae": None, "pearson": None}
    e, r = np.array(pairs).T
    pearson = float(np.corrcoef(e, r)[0, 1]) if len(pairs) > 2 and e.std() > 0 and r.std() > 0 else None
    return {"periods": len(pairs), "mae": float(np.abs(e - r).mean()), "pearson": pearson}


def inside(periods, prefix):
    """Share of periods whose realised F1 lies inside an estimator's F1 band."""
    within = [p[f"{prefix}_f1_lower"] <= p["realised_f1"] <= p[f"{prefix}_f1_upper"]
              for p in periods if finite(p[f"{prefix}_f1_lower"]) and finite(p[f"{prefix}_f1_upper"])]
    return sum(within) / len(within) if within else None


def fmt(x, digits=4):
    return f"{x:.{digits}f}" if finite(x) else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="answers.csv of the labelled reference replay")
    parser.add_argument("--analysis", required=True, help="answers.csv of the replay to monitor")
    parser.add_argument("--vigie", required=True, help="quality.jsonl of the analysis replay")
    parser.add_argument("--min-labels", type=int, default=100, help="periods with fewer labelled events are left out")
    parser.add_argument("--out", help="write the summary there (JSON)")
    args = parser.parse_args()

    reference, analysis = load_answers(args.reference), load_answers(args.analysis)
    vigie = load_vigie(args.vigie)
    nanny, seconds, version, recalibrated, messages = run_nannyml(reference, analysis)

    periods = []
    for start, rows in analysis.groupby("period_start", sort=True):
        labelled = rows.dropna(subset=["label"])
        if len(labelled) < args.min_labels:
            continue
        auc, f1 = realised(labelled)
        empty = dict.fromkeys(["vigie_auc", "vigie_f1", "vigie_f1_lower", "vigie_f1_upper", "vigie_labelled"])
        period = {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "rows": len(rows), "labelled": len(labelled),
                  "realised_auc": auc, "realised_f1": f1, **vigie.get(start, empty),
                  **nanny.get(start, dict.fromkeys(["nannyml_auc", "nannyml_f1", "nannyml_f1_lower", "nannyml_f1_upper"]))}
        periods.append({k: v if finite(v) else None for k, v in period.items()})  # NaN -> null
    if not periods:
        fail(f"no period of {args.analysis} has at least {args.min_labels} labelled events")
    if not any(finite(p["vigie_auc"]) or finite(p["vigie_f1"]) for p in periods):
        fail(f"no period of {args.analysis} has an estimate in {args.vigie} (not the same replay?)")

    print(f"NannyML {version} CBPE, one chunk per period_start, probabilities "
          f"{'recalibrated (isotonic)' if recalibrated else 'used as they are'}; {len(periods)} of "
          f"{analysis['period_start'].nunique()} periods have >= {args.min_labels} labels")
    header = ["start", "rows", "AUC real", "Vigie", "NannyML", "F1 real", "Vigie", "NannyML"]
    print("{:<21}{:>7}{:>10}{:>9}{:>9}{:>10}{:>9}{:>9}".format(*header))
    for p in periods:
        print(f"{p['start']:<21}{p['rows']:>7}{fmt(p['realised_auc']):>10}{fmt(p['vigie_auc']):>9}"
              f"{fmt(p['nannyml_auc']):>9}{fmt(p['realised_f1']):>10}{fmt(p['vigie_f1']):>9}{fmt(p['nannyml_f1']):>9}")

    summary = {name: {metric: compare(periods, f"{name}_{metric}", f"realised_{metric}") for metric in ["auc", "f1"]}
               for name in ["vigie", "nannyml"]}
    for name in summary:
        summary[name]["f1_inside_band"] = inside(periods, name)
    print(f"\n{'estimator':<10}{'AUC MAE':>9}{'AUC r':>8}{'F1 MAE':>9}{'F1 r':>8}{'F1 in band':>12}  (periods)")
    for name, s in summary.items():
        band = "-" if s["f1_inside_band"] is None else f"{100 * s['f1_inside_band']:.0f}%"
        print(f"{name:<10}{fmt(s['auc']['mae']):>9}{fmt(s['auc']['pearson'], 3):>8}{fmt(s['f1']['mae']):>9}"
              f"{fmt(s['f1']['pearson'], 3):>8}{band:>12}  "
              f"({s['auc']['periods']} AUC, {s['f1']['periods']} F1)")
    print("(Vigie's band is its 95% band; NannyML's is its confidence band, +-3 sampling errors; "
          "r: Pearson correlation with the realised figure across periods)")
    print(f"NannyML fit + estimate: {seconds:.2f} s")
    for m in messages:
        print(f"NannyML warned: {m}", file=sys.stderr)

    if args.out:
        with open(args.out, "w") as f:
            json.dump({"nannyml_version": version, "nannyml_seconds": seconds,
                       "nannyml_recalibrated": recalibrated, "min_labels": args.min_labels,
                       "nannyml_warnings": messages, "summary": summary, "periods": periods}, f, indent=1)


if __name__ == "__main__":
    main()
