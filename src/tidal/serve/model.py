"""The model a worker serves: a scikit-learn ``MLPClassifier`` on the digits data set.

It is trained once, at the first start, on ``sklearn.datasets.load_digits()`` (shipped with
scikit-learn, no download) and cached as plain arrays in ``digits_mlp.npz`` — weights, biases and
the data set itself — so no pickle is ever loaded. Later starts read the arrays and predict with
the network's own forward pass (``relu`` hidden layers, ``softmax`` output: what
``MLPClassifier.predict`` computes), which needs only numpy; that load is the worker's real cold
start. Concurrent first starts are serialised with a file lock, and the cache is written to a
temporary file and renamed, so a reader never sees half a model.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_FILE = "digits_mlp.npz"
#: Pixel intensities of the digits data run 0..16; the network sees them scaled to 0..1.
PIXEL_SCALE = 16.0
N_FEATURES = 64
#: Bumped when the training recipe changes, so an old cache is retrained rather than misread.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DigitsModel:
    """A trained multi-layer perceptron and the digits it was trained on."""

    coefs: tuple[np.ndarray, ...]
    intercepts: tuple[np.ndarray, ...]
    classes: np.ndarray
    images: np.ndarray  # (n, 64) raw pixel values 0..16, for ``{"digits": k}`` requests
    labels: np.ndarray

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Class labels for rows of 64 raw pixel values (0..16)."""
        x = np.asarray(inputs, dtype=np.float64) / PIXEL_SCALE
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"expected rows of {N_FEATURES} values, got shape {x.shape}")
        for w, b in zip(self.coefs[:-1], self.intercepts[:-1], strict=True):
            x = np.maximum(x @ w + b, 0.0)
        logits = x @ self.coefs[-1] + self.intercepts[-1]
        # argmax of the logits is argmax of the softmax: skip the exponentials.
        return self.classes[np.argmax(logits, axis=1)]

    def sample(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``k`` random digits from the data set: (images, true labels)."""
        idx = rng.integers(0, len(self.labels), size=k)
        return self.images[idx], self.labels[idx]


def train(random_state: int = 0) -> DigitsModel:
    """Fit the MLP on the digits data set (about a second; importing scikit-learn takes longer)."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    images, labels = load_digits(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=100, random_state=random_state)
    with warnings.catch_warnings():
        # 100 epochs reach ~97 % held-out accuracy; converging fully would only slow the first start.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(images / PIXEL_SCALE, labels)
    return DigitsModel(
        coefs=tuple(np.asarray(c) for c in clf.coefs_),
        intercepts=tuple(np.asarray(b) for b in clf.intercepts_),
        classes=np.asarray(clf.classes_),
        images=images.astype(np.float64),
        labels=labels.astype(np.int64),
    )


def save(model: DigitsModel, path: Path) -> None:
    """Write the model atomically (temporary file in the same folder, then rename)."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "n_layers": np.array(len(model.coefs)),
        "classes": model.classes,
        "images": model.images,
        "labels": model.labels,
    }
    for i, (w, b) in enumerate(zip(model.coefs, model.intercepts, strict=True)):
        arrays[f"coef_{i}"] = w
        arrays[f"intercept_{i}"] = b
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> DigitsModel:
    """Read a cached model; ``allow_pickle=False`` so the file can only hold plain arrays."""
    with np.load(path, allow_pickle=False) as data:
        if int(data["format_version"]) != FORMAT_VERSION:
            raise ValueError(f"{path}: model format {int(data['format_version'])}, expected {FORMAT_VERSION}")
        n = int(data["n_layers"])
        return DigitsModel(
            coefs=tuple(data[f"coef_{i}"] for i in range(n)),
            intercepts=tuple(data[f"intercept_{i}"] for i in range(n)),
            classes=data["classes"],
            images=data["images"],
            labels=data["labels"],
        )


def ensure_model(model_dir: str | Path) -> DigitsModel:
    """Load the cached model from ``model_dir``, training and caching it first if it is missing."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / MODEL_FILE
    if path.exists():
        try:
            return load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cached model unreadable, retraining",
                        extra={"event": "model_retrain", "path": str(path), "error": str(exc)})
    # One trainer at a time: workers started together would otherwise all train at once.
    with open(model_dir / ".train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            try:
                return load(path)
            except (OSError, ValueError, KeyError):
                pass
        started = time.monotonic()
        model = train()
        save(model, path)
        log.info("model trained", extra={"event": "model_trained", "path": str(path),
                                         "seconds": round(time.monotonic() - started, 3)})
        return model
