"""Encoders: pooling, registry, tiny ViT / CLIP / LLaMA / BERT round trips through the registry path,
the feature cache (resume, corruption, shards, missing content) and the real MiniLM on ML-100k."""
import contextlib
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import encoders.extract as extract_module
from encoders.cache import open_entry
from encoders.extract import ItemContent, extract_features
from encoders.models import load_encoder
from encoders.pooling import last_token, masked_mean
from encoders.reduce import reduce_features
from encoders.registry import EncoderSpec, get_spec, load_user_specs, resolve_source

transformers = pytest.importorskip("transformers")


# ------------------------------------------------------------------------------------------- pooling
def test_masked_mean_ignores_padding():
    states = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    assert masked_mean(states, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 2.0]]


def test_last_token_right_and_left_padding():
    states = torch.arange(12, dtype=torch.float32).view(2, 3, 2)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [0, 0, 1]])
    assert last_token(states, right).tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert last_token(states, left).tolist() == [[4.0, 5.0], [10.0, 11.0]]


# ------------------------------------------------------------------------------------------- registry
def test_user_encoder_file_adds_entries(tmp_path):
    path = tmp_path / "enc.yaml"
    path.write_text("- {name: my-opt, family: decoder-llm, source: 'hf:facebook/opt-125m', params: 125000000, dim: 768,"
                    " pooling: last}\n")
    spec = get_spec("my-opt", path)
    assert spec.modality == "text" and spec.resolved_pooling == "last"
    assert resolve_source(spec, model_dir=tmp_path) == "facebook/opt-125m"
    (tmp_path / "facebook" / "opt-125m").mkdir(parents=True)
    assert resolve_source(spec, model_dir=tmp_path) == str(tmp_path / "facebook" / "opt-125m")
    path.write_text('[{"name": "x", "family": "vit", "source": "d", "params": 1, "dim": 2, "colour": "red"}]')
    path.rename(tmp_path / "enc.json")
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        load_user_specs(tmp_path / "enc.json")
    with pytest.raises(KeyError, match="unknown encoder"):
        get_spec("nope")


def test_builtin_offline_entries_resolve_to_installed_wheels():
    for name in ("minilm-l6", "smollm2-135m", "efficientnet-lite0"):
        from pathlib import Path

        assert Path(resolve_source(get_spec(name))).exists(), name


# ------------------------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="module")
def tokenizer_dir():
    return resolve_source(get_spec("minilm-l6"))  # a real WordPiece tokenizer, offline


def _save_tokenizer(source, target, padding_side="right"):
    tok = transformers.AutoTokenizer.from_pretrained(source)
    tok.padding_side = padding_side
    tok.save_pretrained(target)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("tiny")
    specs = {}
    torch.manual_seed(0)
    vit = root / "vit"
    transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                 intermediate_size=64, image_size=32, patch_size=8)).save_pretrained(vit)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    specs["vit"] = EncoderSpec("tiny-vit", "vit", str(vit), 1, 32)
    clip = root / "clip"
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=101, eos_token_id=102,
                         pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(clip)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
    _save_tokenizer(tokenizer_dir, clip)
    specs["clip-image"] = EncoderSpec("tiny-clip-image", "clip-image", str(clip), 1, 16)
    specs["clip-text"] = EncoderSpec("tiny-clip-text", "clip-text", str(clip), 1, 16)
    for side in ("right", "left"):
        llama = root / f"llama-{side}"
        transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)).save_pretrained(llama)
        _save_tokenizer(tokenizer_dir, llama, padding_side=side)
        for pooling in ("mean", "last"):
            specs[f"llama-{side}-{pooling}"] = EncoderSpec(f"tiny-llama-{side}-{pooling}", "decoder-llm", str(llama),
                                                           1, 32, pooling=pooling)
    bert = root / "bert"
    transformers.BertModel(transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=4, intermediate_size=64)).save_pretrained(bert)
    _save_tokenizer(tokenizer_dir, bert)
    specs["bert"] = EncoderSpec("tiny-bert", "text-encoder", str(bert), 1, 32)
    # users add models by registry file: resolve every tiny model through that same path
    registry_file = root / "encoders.yaml"
    import yaml

    registry_file.write_text(yaml.safe_dump([spec.as_dict() for spec in specs.values()]))
    return {key: get_spec(spec.name, registry_file) for key, spec in specs.items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


TEXTS = ["a short title", "a much longer title with several more words in it", "x", "toy story"]


@pytest.mark.parametrize("key", ["bert", "clip-text", "llama-right-mean", "llama-right-last", "llama-left-mean",
                                 "llama-left-last"])
def test_text_features_do_not_depend_on_padding(tiny_models, key):
    encoder = load_encoder(tiny_models[key])
    together = encoder.encode(TEXTS)
    alone = torch.cat([encoder.encode([t]) for t in TEXTS])
    assert together.shape == (4, tiny_models[key].dim)
    assert torch.allclose(together, alone, atol=1e-5)


def test_last_token_pooling_differs_from_mean(tiny_models):
    mean = load_encoder(tiny_models["llama-right-mean"]).encode(TEXTS)
    last = load_encoder(tiny_models["llama-right-last"]).encode(TEXTS)
    assert not torch.allclose(mean, last)


def test_clip_features_are_the_projected_embeddings(tiny_models, images):
    spec = tiny_models["clip-image"]
    encoder = load_encoder(spec)
    features = encoder.encode(images[:2])
    model = transformers.CLIPModel.from_pretrained(spec.source).eval()
    pixels = transformers.CLIPImageProcessor.from_pretrained(spec.source)(
        images=[__import__("PIL.Image").Image.open(p).convert("RGB") for p in images[:2]], return_tensors="pt")
    with torch.no_grad():
        out = model.get_image_features(pixel_values=pixels["pixel_values"])
    expected = out if torch.is_tensor(out) else out.pooler_output
    assert features.shape == (2, 16) and torch.allclose(features, expected, atol=1e-5)


def test_vit_cls_and_mean_pooling(tiny_models, images):
    spec = tiny_models["vit"]
    cls = load_encoder(spec).encode(images)
    mean = load_encoder(EncoderSpec("tiny-vit-mean", "vit", spec.source, 1, 32, pooling="mean")).encode(images)
    model = transformers.ViTModel.from_pretrained(spec.source).eval()
    pixels = transformers.ViTImageProcessor.from_pretrained(spec.source)(
        images=[__import__("PIL.Image").Image.open(p).convert("RGB") for p in images], return_tensors="pt")
    with torch.no_grad():
        states = model(**pixels).last_hidden_state
    assert torch.allclose(cls, states[:, 0], atol=1e-5)
    assert torch.allclose(mean, states[:, 1:].mean(1), atol=1e-5)


# ------------------------------------------------------------------------------------------- feature cache
class CountingEncoder:
    """Wraps an encoder; counts items and can fail after a number of batches (a simulated kill)."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.items, self.batches = inner, fail_after, 0, 0
        self.revision = ""

    def encode(self, batch):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.batches += 1
        self.items += len(batch)
        return self.inner.encode(batch)


def content(n=20):
    texts = [""] + [f"item number {i} " + "word " * (i % 5) for i in range(1, n)] + [""]  # last item has no text
    return ItemContent("toy", texts, [""] * len(texts))


def test_resume_after_interrupted_extraction(tiny_models, tmp_path):
    spec = tiny_models["bert"]
    real = load_encoder(spec)
    crashing = CountingEncoder(real, fail_after=3)
    kw = dict(cache_dir=tmp_path, batch_size=4, chunk_size=4, progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract_features(content(), spec, encoder=crashing, **kw)
    resumed = CountingEncoder(real)
    entry = extract_features(content(), spec, encoder=resumed, **kw)
    assert resumed.items == 19 - 12  # three chunks of 4 were finished before the kill
    fresh = extract_features(content(), spec, encoder=CountingEncoder(real), **{**kw, "cache_dir": tmp_path / "b"})
    assert np.allclose(entry.features, fresh.features, atol=1e-6)
    assert entry.manifest["missing"] == 1 and not entry.mask[20] and not entry.mask[0]
    assert not entry.features[20].any() and not entry.features[0].any()


def test_a_second_extractor_of_the_same_entry_waits_for_the_first(tiny_models, tmp_path):
    """A rerun while the first extraction still runs blocks on the entry's lock, then takes the finished
    entry without encoding anything."""
    spec = tiny_models["bert"]
    real = load_encoder(spec)
    kw = dict(cache_dir=tmp_path, batch_size=4, chunk_size=4, progress=False)
    second, results = CountingEncoder(real), {}
    waiter = threading.Thread(target=lambda: results.update(entry=extract_features(content(), spec, encoder=second,
                                                                                      **kw)))

    class StartsASecond(CountingEncoder):
        def encode(self, batch):
            if self.batches == 2:
                waiter.start()
                waiter.join(timeout=1.0)
                assert waiter.is_alive()  # still waiting for the lock
            return super().encode(batch)

    first = extract_features(content(), spec, encoder=StartsASecond(real), **kw)
    waiter.join(timeout=30)
    assert not waiter.is_alive() and second.items == 0
    assert results["entry"].path == first.path and np.array_equal(results["entry"].features, first.features)


def test_without_a_lock_a_second_extractor_still_takes_the_first_ones_result(tiny_models, tmp_path, monkeypatch):
    """Where locks do not hold (some network file systems; shards assembling at once), the extractor that
    finishes second finds the partial folder gone and returns the finished entry instead of failing."""
    monkeypatch.setattr(extract_module, "_shard_lock", lambda folder, shard: contextlib.nullcontext())
    spec = tiny_models["bert"]
    real = load_encoder(spec)
    kw = dict(cache_dir=tmp_path, batch_size=4, chunk_size=4, progress=False)

    class FinishesElsewhere(CountingEncoder):
        def encode(self, batch):
            if self.batches == 2:  # meanwhile another process completes the whole entry
                extract_features(content(), spec, encoder=CountingEncoder(real), **kw)
            return super().encode(batch)

    entry = extract_features(content(), spec, encoder=FinishesElsewhere(real), **kw)
    assert entry.manifest["n_items"] == 20 and entry.path.is_dir()
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.rglob("*.tmp"))


def test_cache_hit_and_corrupt_cache_rebuilt(tiny_models, tmp_path):
    spec = tiny_models["bert"]
    real = load_encoder(spec)
    first = extract_features(content(), spec, encoder=real, cache_dir=tmp_path, progress=False)
    again = CountingEncoder(real)
    extract_features(content(), spec, encoder=again, cache_dir=tmp_path, progress=False)
    assert again.items == 0
    original = np.array(first.features)
    path = first.path / "features.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip one byte of one feature
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="checksum"):
        open_entry(first.path)
    rebuilt = CountingEncoder(real)
    entry = extract_features(content(), spec, encoder=rebuilt, cache_dir=tmp_path, progress=False, log=lambda m: None)
    assert rebuilt.items == 19 and np.allclose(entry.features, original)
    (first.path / "features.npy").write_bytes(b"truncated")
    entry = extract_features(content(), spec, encoder=real, cache_dir=tmp_path, progress=False, log=lambda m: None)
    assert entry.features.shape == (21, 32)


def test_cache_key_follows_content_and_options(tiny_models, tmp_path):
    spec = tiny_models["bert"]
    real = load_encoder(spec)
    a = extract_features(content(), spec, encoder=real, cache_dir=tmp_path, progress=False)
    changed = content()
    changed.texts[3] = "a different title"
    b = extract_features(changed, spec, encoder=real, cache_dir=tmp_path, progress=False)
    cls = EncoderSpec(spec.name, spec.family, spec.source, 1, 32, pooling="cls")
    c = extract_features(content(), cls, encoder=load_encoder(cls), cache_dir=tmp_path, progress=False)
    assert len({a.path, b.path, c.path}) == 3


def test_shards_assemble_the_same_features(tiny_models, tmp_path):
    spec = tiny_models["bert"]
    real = load_encoder(spec)
    kw = dict(cache_dir=tmp_path, batch_size=4, chunk_size=4, progress=False, log=lambda m: None)
    assert extract_features(content(), spec, encoder=real, shard=(0, 2), **kw) is None
    entry = extract_features(content(), spec, encoder=real, shard=(1, 2), **kw)
    single = extract_features(content(), spec, encoder=real, **{**kw, "cache_dir": tmp_path / "one"})
    assert np.allclose(entry.features, single.features, atol=1e-6)


def test_image_items_without_files_are_missing(tiny_models, images, tmp_path):
    spec = tiny_models["vit"]
    items = ItemContent("imgs", [""] * 4, ["", images[0], "http://example.invalid/x.jpg", images[1]])
    entry = extract_features(items, spec, cache_dir=tmp_path, progress=False)
    assert entry.mask.tolist() == [False, True, False, True] and entry.manifest["missing"] == 1
    with pytest.raises(ValueError, match="no item of none has image content"):
        extract_features(ItemContent("none", ["", "a"], ["", ""]), spec, cache_dir=tmp_path, progress=False)


def test_reductions_are_cached_and_recorded(tiny_models, tmp_path):
    spec = tiny_models["bert"]
    entry = extract_features(content(40), spec, cache_dir=tmp_path, progress=False)
    reduced = reduce_features(entry, "pca", 8)
    assert reduced.shape == (41, 8) and not reduced[0].any() and not reduced[40].any()
    assert "pca-8-s0" in json.loads((entry.path / "manifest.json").read_text())["reductions"]
    ae = reduce_features(entry, "autoencoder", 8)
    present = entry.mask
    assert ((ae[present] > 0) & (ae[present] < 1)).all()
    assert np.array_equal(reduce_features(open_entry(entry.path), "pca", 8), reduced)


def test_extract_cli_with_items_file_and_user_registry(tiny_models, tmp_path):
    table = tmp_path / "items.csv"
    table.write_text("text,image\nfirst item,\nsecond item,\n,\n")
    registry_file = tmp_path / "enc.json"
    spec = tiny_models["bert"]
    registry_file.write_text(json.dumps([{**spec.as_dict(), "name": "tiny"}]))
    cmd = [sys.executable, "-m", "encoders.extract", "--items", str(table), "--encoder", "tiny", "--encoders-file",
           str(registry_file), "--quiet", "--device", "cpu"]
    env = {"KDSR_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["items"] == 3 and out["missing"] == 1 and out["dim"] == 32
    bad_cmd = [sys.executable, "-m", "encoders.extract", "--items", str(table), "--encoder", "nope",
               "--encoders-file", str(registry_file)]
    bad = subprocess.run(bad_cmd, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "unknown encoder 'nope'" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------------- real MiniLM
def test_minilm_neighbours_on_ml100k_titles(tmp_path):
    from harness.data import item_content

    items = item_content("ml-100k")
    ids = {t.split(" (")[0]: i for i, t in enumerate(items["texts"])}
    entry = extract_features(ItemContent("ml-100k", items["texts"], items["images"]), get_spec("minilm-l6"),
                             cache_dir=tmp_path, progress=False)
    assert entry.manifest["n_items"] == 1349 and entry.manifest["missing"] == 0 and entry.features.shape[1] == 384
    features = np.asarray(entry.features)
    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-9)

    def neighbours(title, k=3):
        scores = features @ features[ids[title]]
        return [items["texts"][j].split(" (")[0] for j in np.argsort(-scores)[1:k + 1]]

    assert "Godfather, The" in neighbours("Godfather: Part II, The")
    assert "Scream 2" in neighbours("Scream")
    assert {"Return of the Jedi", "Empire Strikes Back, The"} & set(neighbours("Star Wars"))


def test_data_sets_reach_the_extractor_through_the_entry_point():
    from encoders.extract import items_from_source

    items = items_from_source("ml-100k")
    assert items.dataset == "ml-100k" and len(items.texts) == 1350 and items.texts[0] == ""
    assert items.texts[1].endswith(".") and "Genres:" in items.texts[1]


# ------------------------------------------------------------------------------------------- split weights
def _fake_asset(tmp_path, chunks: list[bytes], unpack=False, sha=None):
    import hashlib

    from encoders.assets import Asset, Part

    files = {}
    for i, chunk in enumerate(chunks):
        files[f"part{i}"] = tmp_path / "site" / f"pkg{i}" / f"data.{i:03d}"
        files[f"part{i}"].parent.mkdir(parents=True, exist_ok=True)
        files[f"part{i}"].write_bytes(chunk)
    parts = tuple(Part(f"fake-part-{i}", "0.1", f"pkg{i}", f"data.{i:03d}") for i in range(len(chunks)))
    digest = sha or hashlib.sha256(b"".join(chunks)).hexdigest()
    calls = []

    def locate(part):
        calls.append(part.distribution)
        path = tmp_path / "site" / part.package / part.path
        if not path.is_file():
            from encoders.assets import MissingPartError
            raise MissingPartError(f"install the package {part.distribution}=={part.version}")
        return path

    return Asset("fake", parts, "joined.bin" if not unpack else "joined.zip", digest, unpack=unpack), locate, calls


def test_split_weights_join_in_order_once_and_a_bad_checksum_leaves_nothing(tmp_path):
    from encoders.assets import AssetChecksumError, assemble

    asset, locate, calls = _fake_asset(tmp_path, [b"first-", b"second-", b"third"])
    folder = assemble(asset, tmp_path / "cache", locate=locate)
    assert (folder / "joined.bin").read_bytes() == b"first-second-third"
    assert len(calls) == 3 and assemble(asset, tmp_path / "cache", locate=locate) == folder and len(calls) == 3
    bad, locate, _ = _fake_asset(tmp_path / "b", [b"a", b"b"], sha="0" * 64)
    with pytest.raises(AssetChecksumError, match="reinstall the parts"):
        assemble(bad, tmp_path / "cache2", locate=locate)
    assert [p.name for p in (tmp_path / "cache2" / "fake").iterdir()] == []  # no partial or final file


def test_split_zip_is_unpacked_and_a_missing_part_names_its_package(tmp_path):
    import io
    import zipfile

    from encoders.assets import MissingPartError, assemble

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/config.json", "{}")
    data = buffer.getvalue()
    asset, locate, _ = _fake_asset(tmp_path, [data[:10], data[10:]], unpack=True)
    folder = assemble(asset, tmp_path / "cache", locate=locate)
    assert (folder / "model" / "config.json").read_text() == "{}" and not (folder / "joined.zip").exists()
    (tmp_path / "site" / "pkg1" / "data.001").unlink()
    with pytest.raises(MissingPartError, match="fake-part-1==0.1"):
        assemble(asset, tmp_path / "other-cache", locate=locate)


def test_shipped_split_assets_name_every_part_and_the_ladder_is_registered():
    from encoders.assets import ASSETS
    from encoders.registry import registry

    assert [len(a.parts) for a in ASSETS.values()] == [5, 4, 22]
    assert ASSETS["qwen2.5-coder-1.5b-gguf"].parts[21].path == "data/part22.bin"
    assert ASSETS["gemma-3-270m-gguf"].parts[0].path == "data/gemma-3-270m-q4_k_m.gguf.part00"
    ladder = ["paraphrase-minilm-l3", "minilm-l6", "mpnet-base", "smollm2-135m", "gemma3-270m", "qwen2.5-1.5b"]
    params = [registry()[name].params for name in ladder]
    assert params == sorted(params) and params[0] < 20e6 and params[-1] > 1.5e9
    assert all(registry()[n].licence for n in ladder if n not in ("minilm-l6", "smollm2-135m"))
    assert registry()["efficientnet-lite2"].image_size == 260


def test_onnx_text_encoder_matches_the_torch_model_it_was_exported_from(tmp_path, tokenizer_dir):
    """The ONNX path (onnxruntime, tokenizer from another source, mean of token states or a named pooled
    output) gives the features of the same model run by torch."""
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                          num_attention_heads=4, intermediate_size=64)).eval()
    bert.requires_grad_(False)

    class Export(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            states = bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask[..., None].float()
            return states, (states * mask).sum(1) / mask.sum(1)

    path = tmp_path / "tiny.onnx"
    ids, mask = torch.randint(0, 1000, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(Export(), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["states", "pooled"], dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "states")})
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    inputs = tok(TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        states = bert(**{k: v for k, v in inputs.items() if k != "token_type_ids"}).last_hidden_state
    expected = masked_mean(states, inputs["attention_mask"])
    for output in ("", "pooled"):
        spec = EncoderSpec("tiny-onnx", "text-encoder", str(path), 1, 32, tokenizer=tokenizer_dir, onnx_output=output)
        features = load_encoder(spec).encode(TEXTS)
        assert torch.allclose(features, expected, atol=1e-5), output


def test_gpu_check_says_it_has_not_run_without_a_gpu():
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: benchmarks/gpu_check.py runs its checks there")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                          cwd=root)
    assert done.returncode == 2 and done.stdout.strip() == ("check: device: no CUDA device (torch.cuda.is_available() "
                                                            "is False): no GPU check has run")
