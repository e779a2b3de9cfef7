"""Teacher signals and distillation terms. Nothing here ever forms an N x N item matrix: teacher
correlations for a batch are gathered from the N x d feature table for the pairs in that batch.

- holistic correlation: teacher cos(f_i, f_j) vs student cos(P e_i, P e_j) over in-sequence pairs (or
  cos(P1 e_i, P2 e_j), the asymmetric form of earlier records),
  as the reference's masked Frobenius norm of (S_hat - S) / tau per sequence, or a KL between
  temperature-softmaxed rows;
- dissected correlation codes: D sub-space cosines of a pair -> nearest of K k-means centroids; student
  MLP(|e_i - e_j|) classifies the code;
- baselines: MSE regression of projected student rows to teacher features, and InfoNCE alignment;
- the retention probe: Spearman between student and teacher cosines on a fixed sample of pairs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def normalize_rows(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.float(), dim=-1, eps=1e-12)


def subspaces(features: torch.Tensor, n_sub: int) -> torch.Tensor:
    """[n, d] -> [n, D, ceil(d / D)]: D contiguous slices, each L2-normalised, zero-padded to equal width
    (padding adds nothing to a dot product)."""
    parts = torch.tensor_split(features.float(), n_sub, dim=1)
    width = max(p.shape[1] for p in parts)
    return torch.stack([F.pad(normalize_rows(p), (0, width - p.shape[1])) for p in parts], dim=1)


def correlation_vectors(sub: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Sub-space cosines of item pairs: [P, D]."""
    return (sub[left] * sub[right]).sum(-1)


def nearest_centroid(vectors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    return torch.cdist(vectors, centroids).argmin(dim=1)


def fit_codebook(teacher: np.ndarray, pairs: np.ndarray, n_codes: int, n_sub: int, seed: int) -> np.ndarray:
    """k-means (scikit-learn) over the correlation vectors of a sample of item pairs: [K, D] centroids."""
    from sklearn.cluster import KMeans

    sub = subspaces(torch.from_numpy(np.asarray(teacher, dtype=np.float32)), n_sub)
    vectors = correlation_vectors(sub, torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])).numpy()
    k = min(n_codes, len(np.unique(vectors.round(6), axis=0)))
    if k < n_codes:
        raise ValueError(f"only {k} distinct correlation vectors in the pair sample; cannot fit {n_codes} codes")
    return KMeans(n_clusters=n_codes, n_init=1, random_state=seed).fit(vectors).cluster_centers_.astype(np.float32)


def sample_pairs(seq: torch.Tensor, per_seq: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs of distinct positions inside each sequence ([B, L] right-padded) -> item ids (i, j)."""
    lengths = (seq > 0).sum(dim=1)
    rows = torch.nonzero(lengths >= 2).flatten()
    if len(rows) == 0:
        empty = seq.new_zeros(0)
        return empty, empty
    n = lengths[rows].repeat_interleave(per_seq).float()
    rows = rows.repeat_interleave(per_seq)
    a = (torch.rand(len(rows), generator=generator, device=seq.device) * n).long()
    b = (torch.rand(len(rows), generator=generator, device=seq.device) * (n - 1)).long()
    b = b + (b >= a).long()
    return seq[rows, a], seq[rows, b]


class HolisticLoss(nn.Module):
    def __init__(self, table_dim: int, proj_dim: int, tau: float, form: str = "norm", shared: bool = True):
        """`shared`: one projection for both items of a pair (a symmetric similarity, as the reference);
        otherwise cos(P1 e_i, P2 e_j)."""
        super().__init__()
        if form not in ("norm", "kl"):
            raise ValueError(f"holistic form {form!r}: use 'norm' (reference) or 'kl'")
        self.p1 = nn.Linear(table_dim, proj_dim)
        self.p2 = self.p1 if shared else nn.Linear(table_dim, proj_dim)
        self.tau, self.form = tau, form

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """student [B, L, d_s] table rows, teacher [B, L, d_t] unit rows, valid [B, L] (item with content)."""
        target = teacher @ teacher.transpose(1, 2)
        pred = normalize_rows(self.p1(student)) @ normalize_rows(self.p2(student)).transpose(1, 2)
        eye = torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device)
        pairs = valid[:, :, None] & valid[:, None, :] & ~eye
        if self.form == "norm":
            per_seq = ((pred - target) / self.tau).pow(2).masked_fill(~pairs, 0).sum(dim=(1, 2)).clamp(min=1e-12).sqrt()
            has_pairs = pairs.any(dim=(1, 2))
            return per_seq[has_pairs].mean() if has_pairs.any() else pred.sum() * 0
        rows = pairs.any(dim=2)
        if not rows.any():
            return pred.sum() * 0
        neg = torch.finfo(pred.dtype).min
        log_q = F.log_softmax((pred / self.tau).masked_fill(~pairs, neg), dim=2)
        p = F.softmax((target / self.tau).masked_fill(~pairs, neg), dim=2)
        kl = (p * (torch.log(p.clamp(min=1e-12)) - log_q)).masked_fill(~pairs, 0).sum(dim=2)
        return kl[rows].mean()


class CodeLoss(nn.Module):
    """Student pairwise classifier MLP(|e_i - e_j|) -> K logits, cross-entropy against the teacher's code."""

    def __init__(self, table_dim: int, n_codes: int, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(table_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_codes))

    def forward(self, e_i: torch.Tensor, e_j: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if len(codes) == 0:
            return self.mlp[0].weight.sum() * 0
        return F.cross_entropy(self.mlp((e_i - e_j).abs()), codes)


class MSEDistill(nn.Module):
    """Baseline: student rows, linearly mapped to the teacher's width, regressed to the teacher rows."""

    def __init__(self, table_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(table_dim, teacher_dim)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.proj(student), teacher)


class ContrastiveDistill(nn.Module):
    """Baseline: InfoNCE between projected student rows and teacher rows, in-batch negatives."""

    def __init__(self, table_dim: int, teacher_dim: int, tau: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(table_dim, teacher_dim)
        self.tau = tau

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        logits = normalize_rows(self.proj(student)) @ normalize_rows(teacher).T / self.tau
        return F.cross_entropy(logits, torch.arange(len(student), device=student.device))


def retention_pairs(mask: np.ndarray, n_pairs: int, seed: int) -> np.ndarray:
    """A fixed random sample of distinct item pairs, both with content: int64 [P, 2]."""
    items = np.flatnonzero(mask)
    rng = np.random.default_rng(seed)
    left = rng.choice(items, n_pairs)
    right = rng.choice(items, n_pairs)
    keep = left != right
    return np.stack([left[keep], right[keep]], axis=1)


def retention(student: torch.Tensor, teacher_unit: torch.Tensor, pairs: torch.Tensor) -> float:
    """Spearman correlation of student and teacher cosines over the probe pairs."""
    from scipy.stats import spearmanr

    s = normalize_rows(student)
    student_cos = (s[pairs[:, 0]] * s[pairs[:, 1]]).sum(-1)
    teacher_cos = (teacher_unit[pairs[:, 0]] * teacher_unit[pairs[:, 1]]).sum(-1)
    value = spearmanr(student_cos.detach().cpu().numpy(), teacher_cos.cpu().numpy()).statistic
    return float(value) if np.isfinite(value) else 0.0
