"""Accuracy and agreement figures shared by training, quantization and verification reports."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[-1])
    top = np.argsort(-scores, axis=-1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows where two models pick the same class."""
    return float(np.mean(a.argmax(-1) == b.argmax(-1)))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[N, C]`` outputs."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and scores of the ``k`` best classes of one ``[C]`` score vector, best first."""
    k = min(k, len(scores))
    ids = np.argsort(-scores, kind="stable")[:k]
    return ids, scores[ids]
