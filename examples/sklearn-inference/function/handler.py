"""Recall prediction for a flash card: the troubleshooting guide's handler, done right.

- The model is the dict train.py pickles, ``{"sklearn_model": LinearRegression, "decay_rate": 0.3}``,
  read as a dict (the guide's Error 6 came from expecting a class instance).
- The features go in as a pandas DataFrame with the training's column names, so scikit-learn sees
  what it was fitted on. pandas therefore has to be in the layer (the guide's Error 5):
  ``layerforge package-function --layer`` checks that before anything is deployed.
- The model comes from S3 when MODEL_BUCKET is set (MODEL_KEY names the object), else from the
  model.pkl packaged beside this file. It is loaded once per execution environment and kept.
- A request without a required field gets a 400, never a 500.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

MODEL_KEY = os.environ.get("MODEL_KEY", "models/forgetting_curve_v1.pkl")
MODEL_VERSION = os.environ.get("MODEL_VERSION", "v1")
PACKAGED_MODEL = Path(__file__).with_name("model.pkl")
# The request's field names (as the guide's clients send them) against the model's feature names.
FIELDS = {
    "days_since_review": "days_since_last_review",
    "review_count": "review_count",
    "difficulty_score": "difficulty_score",
}
REVIEW_THRESHOLD = 0.7


@functools.cache
def load_model() -> dict[str, Any]:
    """The model dict, read once per execution environment (a warm start reuses it)."""
    # pickle runs code from the file: load only models from your own bucket or package.
    model: dict[str, Any] = pickle.loads(_model_bytes())  # noqa: S301
    print("Model loaded successfully")
    return model


def _model_bytes() -> bytes:
    bucket = os.environ.get("MODEL_BUCKET")
    if not bucket:
        return PACKAGED_MODEL.read_bytes()
    # The runtime ships boto3; imported here, its ~0.2 s is paid only when the model lives in S3.
    import boto3  # noqa: PLC0415

    print(f"Loading model from s3://{bucket}/{MODEL_KEY}")
    return boto3.client("s3").get_object(Bucket=bucket, Key=MODEL_KEY)["Body"].read()


def predict_recall_probability(model: dict[str, Any], features: dict[str, float]) -> float:
    """The probability of recalling the card now, between 0 and 1."""
    frame = pd.DataFrame({name: [features[name]] for name in FIELDS.values()})
    prediction = float(model["sklearn_model"].predict(frame)[0])
    return min(1.0, max(0.0, prediction))


def optimal_review_days(recall: float, decay_rate: float, threshold: float = REVIEW_THRESHOLD) -> int:
    """Days until recall is expected to fall under the threshold, decaying at `decay_rate` a day; 0: today."""
    if recall < threshold:
        return 0
    return max(1, math.ceil(math.log(recall / threshold) / decay_rate))


def recommendation(days: int) -> str:
    return "Review today!" if days == 0 else "Review tomorrow" if days == 1 else f"Review in {days} days"


def _request(event: dict[str, Any]) -> dict[str, Any]:
    """The request itself: API Gateway wraps it as a JSON string in `body`; a direct invoke does not."""
    body = event.get("body")
    request = json.loads(body) if isinstance(body, str) else event
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object")
    return request


def _features(request: dict[str, Any]) -> dict[str, float]:
    features = {}
    for field, feature in FIELDS.items():
        value = request[field]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{field} must be a number, got {value!r}")
        features[feature] = float(value)
    return features


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body)}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Predict the recall probability of one card and when to review it next."""
    try:
        request = _request(event)
        features = _features(request)
    except KeyError as error:
        return _response(400, {"error": f"Missing required field: {error.args[0]}"})
    except ValueError as error:  # json.JSONDecodeError is one
        return _response(400, {"error": str(error)})
    card_id = request.get("card_id")
    print(f"Prediction request: card_id={card_id}, features={features}")
    try:
        model = load_model()
        recall = predict_recall_probability(model, features)
        days = optimal_review_days(recall, float(model["decay_rate"]))
    except Exception as error:  # the client gets a 500 with the reason; the log has it too
        print(f"Error: {error!r}")
        return _response(500, {"error": str(error)})
    print(f"Prediction: recall_prob={recall:.2f}, optimal_days={days}")
    return _response(
        200,
        {
            "card_id": card_id,
            "recall_probability": recall,
            "optimal_review_days": days,
            "recommendation": recommendation(days),
            "model_version": MODEL_VERSION,
            "timestamp": datetime.now(timezone.utc).isoformat(),
        },
    )
