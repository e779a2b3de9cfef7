"""Modality tables fused into any backbone, and the method axis: id, frozen, two_stage, mse_kd,
contrastive_kd, kdsr and its ablations.

Per modality m a trainable table e^m (initialised from the cached, optionally reduced features) is
fused per position with the item-ID embedding (softmax gate as in the reference, concatenation +
linear, or sum). Scores stay `h . x_j` with ID embeddings only, as in the reference, unless
`score_with="fused"`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kdsr_util.settings import setting
from methods.backbones import SCORE_WITH, build_backbone
from methods.distill import (CodeLoss, ContrastiveDistill, HolisticLoss, MSEDistill, correlation_vectors,
                             nearest_centroid, normalize_rows, retention, retention_pairs, sample_pairs, subspaces)


@dataclass
class Modality:
    """One modality's arrays, row 0 = padding; `init` initialises e^m, `teacher` is the frozen signal."""

    name: str
    init: np.ndarray  # float32 [n_items + 1, d_init]
    teacher: np.ndarray  # float32 [n_items + 1, d_teacher]
    mask: np.ndarray  # bool [n_items + 1]: item has content
    codebook: np.ndarray | None = None  # float32 [K, D] for the code loss
    trained: np.ndarray | None = None  # bool [n_items + 1]: item occurs in the training rows (None: all)


@dataclass(frozen=True)
class MethodSpec:
    """What a method uses. Each flag switches on a part of the model, and with it the declared settings
    that name the flag in `needs` (e.g. `tau` needs `holistic`); the others are ignored by the method."""

    modalities: bool = True  # uses modality tables
    trainable_tables: bool = True
    holistic: bool = False
    codes: bool = False
    mse: bool = False
    contrastive: bool = False
    asynchronous: bool = False


METHODS = {
    "id": MethodSpec(modalities=False),
    "frozen": MethodSpec(trainable_tables=False),
    "two_stage": MethodSpec(),
    "mse_kd": MethodSpec(mse=True),
    "contrastive_kd": MethodSpec(contrastive=True),
    "kdsr": MethodSpec(holistic=True, codes=True, asynchronous=True),
    "kdsr_no_hol": MethodSpec(codes=True, asynchronous=True),
    "kdsr_no_code": MethodSpec(holistic=True, asynchronous=True),
    "kdsr_no_async": MethodSpec(holistic=True, codes=True),
}


@dataclass
class DistillSettings:
    """The method settings of a trial (each matters only to the methods whose MethodSpec flag it `needs`)
    and the fixed internals of the distillation terms (plain fields)."""

    fusion: str = setting("gate", choices=("gate", "concat", "sum"), needs="modalities",
                          help="how each position fuses the ID embedding with the modality tables")
    score_with: str = setting("id", choices=SCORE_WITH, needs="modalities",
                              help="id: scores use ID embeddings (the reference); fused: the fused item vectors")
    init_std: float = setting(0.02, interval="(0, inf)", needs="modalities",
                              help="tables are standardised to this std (the ID embedding's init scale)")
    tau: float = setting(1.5, interval="(0, inf)", needs="holistic", help="holistic-correlation temperature")
    holistic_form: str = setting("norm", choices=("norm", "kl"), needs="holistic",
                                 help="norm (reference: masked Frobenius norm) or kl")
    holistic_projection: str = setting("shared", choices=("shared", "separate"), needs="holistic", before="separate",
                                       help="shared: student similarity cos(P e_i, P e_j) with one projection, as "
                                            "the reference; separate: cos(P1 e_i, P2 e_j), every record before "
                                            "2026-12 (same NDCG@10, higher retention: results/holistic-ml100k)")
    lambda_hol: list[float] = setting([4.0], interval="[0, inf)", per_modality=True, needs="holistic",
                                      help="holistic loss weight: one value, or one per modality")
    lambda_code: list[float] = setting([0.5], interval="[0, inf)", per_modality=True, needs="codes",
                                       help="code loss weight: one value, or one per modality")
    lambda_mse: float = setting(1.0, interval="[0, inf)", needs="mse", help="mse_kd loss weight")
    lambda_contrastive: float = setting(1.0, interval="[0, inf)", needs="contrastive",
                                        help="contrastive_kd loss weight")
    pairs_per_seq: int = setting(64, interval="[1, inf)", needs="codes",
                                 help="code-loss pairs sampled per training sequence")
    contrastive_tau: float = 0.1
    proj_dim: int = 64  # the trial's model dimension
    code_hidden: int = 64
    probe_pairs: int = 2000
    seed: int = 0

    def weight(self, values: list[float], index: int) -> float:
        return values[index] if len(values) > 1 else values[0]


class ModalityFusion(nn.Module):
    """Input embedding = fusion of the ID embedding with each modality table's (adapted) row."""

    def __init__(self, modalities: list[Modality], dim: int, fusion: str, trainable: bool, init_std: float):
        super().__init__()
        if fusion not in ("gate", "concat", "sum"):
            raise ValueError(f"unknown fusion {fusion!r}: use gate, concat or sum")
        self.fusion = fusion
        self.n_items = len(modalities[0].init) - 1
        tables, adapters = [], []
        for modality in modalities:
            init = torch.from_numpy(np.asarray(modality.init, dtype=np.float32)).clone()
            present = torch.from_numpy(modality.mask)
            if present.any():
                init[present] -= init[present].mean(0)
                init[present] *= init_std / init[present].std().clamp(min=1e-12)
            init[~present] = 0
            tables.append(nn.Embedding.from_pretrained(init, freeze=not trainable, padding_idx=0))
            adapters.append(nn.Identity() if init.shape[1] == dim else nn.Linear(init.shape[1], dim, bias=False))
        self.tables = nn.ModuleList(tables)
        self.adapters = nn.ModuleList(adapters)
        if fusion == "gate":
            self.gate = nn.Linear(dim, 1)
        elif fusion == "concat":
            self.mix = nn.Linear(dim * (len(modalities) + 1), dim)

    def item_ids(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.where(seq > self.n_items, torch.zeros_like(seq), seq)  # e.g. BERT4Rec's [mask] -> padding

    def forward(self, seq: torch.Tensor, id_emb: torch.Tensor) -> torch.Tensor:
        ids = self.item_ids(seq)
        candidates = [id_emb] + [adapter(table(ids)) for table, adapter in zip(self.tables, self.adapters)]
        if self.fusion == "sum":
            return torch.stack(candidates).sum(0)
        if self.fusion == "concat":
            return self.mix(torch.cat(candidates, dim=-1))
        stacked = torch.stack(candidates, dim=-2)  # [B, L, M + 1, d]
        weights = torch.softmax(self.gate(stacked), dim=-2)
        return (weights * stacked).sum(-2)


class MethodModel(nn.Module):
    """A backbone with fused modality tables and the method's distillation terms."""

    def __init__(self, backbone: nn.Module, modalities: list[Modality], spec: MethodSpec, settings: DistillSettings):
        """`backbone` was built with this method's ModalityFusion (see build_method_model)."""
        super().__init__()
        if not isinstance(getattr(backbone, "input_fusion", None), ModalityFusion):
            raise ValueError("MethodModel needs a backbone built with its modality fusion (use build_method_model)")
        self.backbone = backbone
        self.spec = spec
        self.settings = settings
        self.names = [m.name for m in modalities]
        self.fusion = backbone.input_fusion
        self.hol = nn.ModuleList()
        self.code = nn.ModuleList()
        self.aux = nn.ModuleList()
        for index, modality in enumerate(modalities):
            table_dim, teacher_dim = modality.init.shape[1], modality.teacher.shape[1]
            teacher = torch.from_numpy(np.asarray(modality.teacher, dtype=np.float32))
            self.register_buffer(f"teacher_unit_{index}", normalize_rows(teacher), persistent=False)
            present = torch.from_numpy(np.asarray(modality.mask))
            standard = (teacher - teacher[present].mean(0)) / teacher[present].std().clamp(min=1e-12)
            self.register_buffer(f"teacher_std_{index}", standard, persistent=False)  # for mse / contrastive
            self.register_buffer(f"mask_{index}", torch.from_numpy(np.asarray(modality.mask)), persistent=False)
            # the retention probe: pairs of items with content that occur in training (the rows of items never
            # seen in training never move); the probe over every item with content is kept beside it
            in_training = modality.mask if modality.trained is None else modality.mask & modality.trained
            pairs = retention_pairs(in_training, settings.probe_pairs, settings.seed)
            self.register_buffer(f"probe_{index}", torch.from_numpy(pairs), persistent=False)
            pairs = retention_pairs(modality.mask, settings.probe_pairs, settings.seed)
            self.register_buffer(f"probe_all_{index}", torch.from_numpy(pairs), persistent=False)
            if spec.holistic:
                self.hol.append(HolisticLoss(table_dim, settings.proj_dim, settings.tau, settings.holistic_form,
                                             shared=settings.holistic_projection == "shared"))
            if spec.codes:
                if modality.codebook is None:
                    raise ValueError(f"modality {modality.name}: the code loss needs a codebook")
                n_codes, n_sub = modality.codebook.shape
                self.register_buffer(f"sub_{index}", subspaces(teacher, n_sub), persistent=False)
                self.register_buffer(f"centroids_{index}", torch.from_numpy(modality.codebook), persistent=False)
                self.code.append(CodeLoss(table_dim, n_codes, settings.code_hidden))
            if spec.mse:
                self.aux.append(MSEDistill(table_dim, teacher_dim))
            if spec.contrastive:
                self.aux.append(ContrastiveDistill(table_dim, teacher_dim, settings.contrastive_tau))

    # ------------------------------------------------------------------------------------ interface
    @property
    def item_emb(self):
        return self.backbone.item_emb

    def predict(self, item_seq):
        return self.backbone.predict(item_seq)

    def predict_states(self, item_seq):
        return self.backbone.predict_states(item_seq)

    def output_items(self):
        return self.backbone.output_items()

    def slow_parameters(self):
        return list(self.fusion.tables.parameters()) if self.spec.asynchronous else []

    def losses(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.backbone.losses(windows)
        seq = self.fusion.item_ids(windows[:, :-1])
        s = self.settings
        for m, table in enumerate(self.fusion.tables):
            mask = getattr(self, f"mask_{m}")
            name = self.names[m]
            if self.spec.holistic:
                valid = (seq > 0) & mask[seq]
                teacher = getattr(self, f"teacher_unit_{m}")[seq]
                out[f"hol:{name}"] = s.weight(s.lambda_hol, m) * self.hol[m](table(seq), teacher, valid)
            if self.spec.codes:
                left, right = sample_pairs(seq, s.pairs_per_seq)
                keep = mask[left] & mask[right]
                left, right = left[keep], right[keep]
                codes = nearest_centroid(correlation_vectors(getattr(self, f"sub_{m}"), left, right),
                                         getattr(self, f"centroids_{m}"))
                out[f"code:{name}"] = s.weight(s.lambda_code, m) * self.code[m](table(left), table(right), codes)
            if self.spec.mse or self.spec.contrastive:
                items = torch.unique(seq[seq > 0])
                items = items[mask[items]]
                term, weight = ("mse", s.lambda_mse) if self.spec.mse else ("contrastive", s.lambda_contrastive)
                out[f"{term}:{name}"] = weight * self.aux[m](table(items), getattr(self, f"teacher_std_{m}")[items])
        return out

    @torch.no_grad()
    def epoch_metrics(self) -> dict:
        """Modality retention: Spearman(student cos of e^m, teacher cos of f^m) on the fixed probe pairs of
        training items ("retention") and of every item with content ("retention_all_items")."""
        out = {}
        for key, probe in (("retention", "probe"), ("retention_all_items", "probe_all")):
            out[key] = {name: retention(table.weight, getattr(self, f"teacher_unit_{m}"), getattr(self, f"{probe}_{m}"))
                        for m, (name, table) in enumerate(zip(self.names, self.fusion.tables))}
        return out


def build_method_model(method: str, backbone: str, n_items: int, max_len: int, modalities: list[Modality] = (),
                       settings: DistillSettings | None = None, item_counts: torch.Tensor | None = None,
                       backbone_settings: dict | None = None, loss=None, **hparams) -> nn.Module:
    """The backbone alone for `id`; otherwise the backbone built with the method's modality fusion, wrapped
    with the method's distillation terms. Backbone settings as in methods.backbones.build_backbone."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    spec = METHODS[method]
    settings = settings or DistillSettings()
    if not spec.modalities:
        return build_backbone(backbone, n_items, max_len, item_counts, backbone_settings, loss=loss, **hparams)
    if not modalities:
        raise ValueError(f"method {method!r} needs at least one encoder (--encoder)")
    if len(settings.lambda_hol) not in (1, len(modalities)) or len(settings.lambda_code) not in (1, len(modalities)):
        raise ValueError(f"lambda_hol / lambda_code: give one value or one per modality ({len(modalities)})")

    def fusion(dim: int) -> ModalityFusion:
        return ModalityFusion(modalities, dim, settings.fusion, spec.trainable_tables, settings.init_std)

    net = build_backbone(backbone, n_items, max_len, item_counts, backbone_settings, item_fusion=fusion,
                         score_with=settings.score_with, loss=loss, **hparams)
    return MethodModel(net, modalities, spec, settings)
