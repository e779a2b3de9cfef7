"""Optional reduction of cached features to the trainer's dimension: none, PCA, or the reference's small
autoencoder (sigmoid bottleneck). Results are cached beside the features and recorded in the manifest.

Note: the sigmoid bottleneck makes every reduced feature non-negative, so all teacher cosines are
positive and compressed; PCA keeps signs. Missing items (mask False) stay zero and are not fitted on.
"""
from __future__ import annotations

import numpy as np
import torch

from encoders.cache import FeatureSet, atomic_save, atomic_write_json

METHODS = ("none", "pca", "autoencoder")


def pca(features: np.ndarray, dim: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=dim, random_state=seed).fit_transform(features).astype(np.float32)


def autoencoder(features: np.ndarray, dim: int, seed: int, epochs: int = 100, batch_size: int = 256,
                lr: float = 1e-3) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.from_numpy(features.astype(np.float32))
    x = (x - x.mean(0)) / x.std(0).clamp(min=1e-6)  # standardise so one loss scale fits every encoder
    encoder = torch.nn.Sequential(torch.nn.Linear(x.shape[1], dim), torch.nn.Sigmoid())
    decoder = torch.nn.Linear(dim, x.shape[1])
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = torch.nn.functional.mse_loss(decoder(encoder(x[index])), x[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return encoder(x).numpy()


def reduce_features(entry: FeatureSet, method: str = "none", dim: int = 128, seed: int = 0) -> np.ndarray:
    """[n_items + 1, dim] float32 (row 0 and missing items zero); cached per (method, dim, seed)."""
    if method not in METHODS:
        raise ValueError(f"unknown reduction {method!r}; use one of {', '.join(METHODS)}")
    if method == "none":
        return np.asarray(entry.features, dtype=np.float32)
    if dim >= entry.manifest["dim"]:
        raise ValueError(f"cannot reduce {entry.manifest['dim']}-d features to {dim} dims")
    name = f"{method}-{dim}-s{seed}"
    path = entry.path / f"reduced-{name}.npy"
    if name in entry.manifest["reductions"] and path.is_file():
        reduced = np.load(path)
        if reduced.shape == (len(entry.mask), dim):
            return reduced
    present = np.asarray(entry.mask)
    fitted = (pca if method == "pca" else autoencoder)(np.asarray(entry.features[present], dtype=np.float32), dim, seed)
    reduced = np.zeros((len(present), dim), dtype=np.float32)
    reduced[present] = fitted
    atomic_save(reduced, path)
    entry.manifest["reductions"][name] = {"method": method, "dim": dim, "seed": seed, "file": path.name}
    atomic_write_json(entry.manifest, entry.path / "manifest.json")
    return reduced
