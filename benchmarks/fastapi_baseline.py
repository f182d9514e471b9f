"""scikit-learn + FastAPI prediction API: the baseline Vigie's Rust service is benchmarked against.

It is shaped like the student projects' APIs Vigie replaces: a scikit-learn model saved with
joblib, a pydantic model with the 28 BAAC features, `predict_proba` on a one-row pandas DataFrame,
served by uvicorn with several worker processes. Like Vigie's service it requires a bearer token
(env BASELINE_TOKEN; 401 otherwise). Empty features (null in the request) are filled with the
training mode (categorical) or median (numerical), as Vigie does; there are none in the data files.

    python3 benchmarks/fastapi_baseline.py train --out /tmp/x/model.joblib [--algorithm rf|hgb]
    BASELINE_TOKEN=secret python3 benchmarks/fastapi_baseline.py serve --model /tmp/x/model.joblib \
        --port 8100 --workers 2

    GET  /health   -> {"status": "ok"}
    POST /predict  {"features": {"place": 1, ...}} -> {"class": 0|1, "probability": float}

In benchmarks/predict-load the serving benchmark trains a model with `train`, starts `serve`, then loads
/predict with wrk, posting benchmarks/baac-request.json (the first X_test row) through
benchmarks/wrk-post.lua, exactly as it loads Vigie's service. Needs Python 3 with fastapi, uvicorn,
scikit-learn, pandas and joblib:

    WRK_BODY=benchmarks/baac-request.json WRK_TOKEN=secret \
        wrk -t2 -c32 -d20s --latency -s benchmarks/wrk-post.lua http://127.0.0.1:8100/predict
"""

import argparse
import os
import secrets
import socket
import time
from contextlib import asynccontextmanager
from pathlib import Path

import joblib
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

DATA = Path(__file__).resolve().parent.parent / "data" / "baac"
NUMERICAL = {"year_acc", "victim_age", "vma", "jour", "lat", "long", "hour", "nb_victim", "nb_vehicules"}
MODEL_ENV = "BASELINE_MODEL"  # how `serve` hands the model path to uvicorn's worker processes
TOKEN_ENV = "BASELINE_TOKEN"


def train(out: Path, algorithm: str) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    x_train = pd.read_csv(DATA / "X_train.csv")
    y_train = pd.read_csv(DATA / "y_train.csv")["grav"].to_numpy()
    x_test = pd.read_csv(DATA / "X_test.csv")
    y_test = pd.read_csv(DATA / "y_test.csv")["grav"].to_numpy()
    if algorithm == "rf":  # the seeds' model
        model = RandomForestClassifier(n_estimators=100, max_depth=15, n_jobs=1, random_state=0)
    else:
        model = HistGradientBoostingClassifier(random_state=0)
    start = time.perf_counter()
    model.fit(x_train, y_train)
    fit_s = time.perf_counter() - start
    # Values for empty request fields: training mode (categorical) or median (numerical).
    fill = {c: float(x_train[c].median() if c in NUMERICAL else x_train[c].mode()[0]) for c in x_train.columns}
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"model": model, "columns": list(x_train.columns), "fill": fill}, out)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    print(f"{algorithm}: fit {fit_s:.1f} s, holdout ROC AUC {auc:.4f}, saved to {out}")


class Features(BaseModel):
    # Required facts.
    place: int
    catu: int
    sexe: int
    year_acc: int
    catv: int
    catr: int
    jour: int
    mois: int
    lum: int
    dep: int
    com: int
    agg_: int
    int_: int = Field(alias="int")
    hour: int
    nb_victim: int
    nb_vehicules: int
    # Facts a dispatcher may not know yet: null or absent means missing.
    secu1: float | None = None
    victim_age: float | None = None
    obsm: float | None = None
    motor: float | None = None
    circ: float | None = None
    surf: float | None = None
    situ: float | None = None
    vma: float | None = None
    atm: float | None = None
    col: float | None = None
    lat: float | None = None
    long: float | None = None


class PredictRequest(BaseModel):
    features: Features


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.bundle = joblib.load(os.environ[MODEL_ENV])
    app.state.token = os.environ[TOKEN_ENV]
    yield


app = FastAPI(title="scikit-learn baseline", lifespan=lifespan)
bearer = HTTPBearer(auto_error=False)


def check_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    if credentials is None or not secrets.compare_digest(credentials.credentials, request.app.state.token):
        raise HTTPException(status_code=401, detail="invalid or missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict", dependencies=[Depends(check_token)])
def predict(body: PredictRequest, request: Request):
    bundle = request.app.state.bundle
    row = pd.DataFrame([body.features.model_dump(by_alias=True)], columns=bundle["columns"], dtype=float)
    row = row.fillna(bundle["fill"])
    probability = float(bundle["model"].predict_proba(row)[0, 1])
    return {"class": int(probability >= 0.5), "probability": probability}


def tcp_socket(sock: socket.socket) -> socket.socket:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return sock
    tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    tcp.set_inheritable(True)
    return tcp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train", help="fit on X_train/y_train, save with joblib, print holdout ROC AUC")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--algorithm", choices=["rf", "hgb"], default="rf")
    s = commands.add_parser("serve", help="serve a saved model with uvicorn (token from env BASELINE_TOKEN)")
    s.add_argument("--model", type=Path, required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8100)
    s.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    if args.command == "train":
        train(args.out, args.algorithm)
    else:
        import uvicorn

        if not os.environ.get(TOKEN_ENV):
            parser.error(f"set the bearer token in env {TOKEN_ENV}")
        os.environ[MODEL_ENV] = str(args.model.resolve())
        # One OpenMP thread per worker (HistGradientBoosting predicts with OpenMP): the worker processes
        # are the parallelism, and more threads than cores makes single-row latency erratic.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # With several workers uvicorn binds the listening socket itself and leaves its proto at 0, so
        # asyncio never sets TCP_NODELAY on accepted connections and every keep-alive request after the
        # first waits ~40 ms for a delayed ACK (Kludex/uvicorn#3149). Re-wrap it as TCP: the baseline
        # must be measured, not that bug.
        bind_socket = uvicorn.Config.bind_socket
        uvicorn.Config.bind_socket = lambda config: tcp_socket(bind_socket(config))
        # Several workers need an import string: the workers import this file as a module.
        uvicorn.run("fastapi_baseline:app", app_dir=str(Path(__file__).resolve().parent),
                    host=args.host, port=args.port, workers=args.workers, log_level="warning")


if __name__ == "__main__":
    main()
