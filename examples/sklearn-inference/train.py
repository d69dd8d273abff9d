"""Train the guide's forgetting-curve model and pickle it the way the handler reads it.

    PYTHONPATH=LAYER/python python3.11 -S train.py OUT/model.pkl

The model is a dict, ``{"sklearn_model": LinearRegression, "decay_rate": 0.3}`` (the guide's Error 6
came from a handler that expected a class instance instead), fitted on a pandas DataFrame whose
columns the handler uses again at inference. Run it with the layer's own scikit-learn and pandas, as
build.sh does: scikit-learn does not promise that a pickle loads in another release than the one
that wrote it, so the model is trained by exactly the libraries that will load it on Lambda.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

FEATURES = ("days_since_last_review", "review_count", "difficulty_score")
DECAY_RATE = 0.3
SEED = 20251211  # the same model on every run


def review_history(rows: int = 5000, seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic review logs: recall decays with the days since the last review, more slowly for a
    card reviewed often, faster for a hard one."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 31, rows)
    reviews = rng.integers(1, 11, rows)
    difficulty = rng.uniform(0.0, 1.0, rows)
    strength = 1.0 + reviews * (1.2 - difficulty)
    recall = np.exp(-DECAY_RATE * days / strength) + rng.normal(0.0, 0.03, rows)
    frame = pd.DataFrame(
        {"days_since_last_review": days, "review_count": reviews, "difficulty_score": difficulty},
        columns=list(FEATURES),
    )
    return frame, np.clip(recall, 0.0, 1.0)


def train() -> dict[str, object]:
    frame, recall = review_history()
    model = LinearRegression().fit(frame, recall)
    print(f"trained on {len(frame)} reviews: R^2 {model.score(frame, recall):.3f}")
    return {"sklearn_model": model, "decay_rate": DECAY_RATE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the pickled model (model.pkl)")
    out = parser.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pickle.dumps(train()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
