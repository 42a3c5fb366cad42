"""Model artifacts: one directory per trained model.

    manifest.json     what the model is: domain, head, encoder, data fingerprint, metrics,
                      and the sha256 of every other file (verified at load; hashed once
                      per file version, see ``temporec.model.checksums``)
    model.safetensors the weights (with the frozen item text embeddings) and item popularity;
                      in a compact artifact (format 2, ``compact_artifact``) the catalog's
                      item vectors as one table (float16 by default) in place of the text
                      embeddings, id embeddings and feature values they are computed from
    catalog.jsonl     the items the model scores: {"item_id", "text", features...} per line;
    catalog.json      in a compact artifact instead: {"item_ids": [...], "texts": [...],
                      "features": {name: [...]}}, columns that parse several times faster
    items.faiss       optional: the approximate index of the item vectors
                      (``temporec.model.item_index``; Manifest.item_index)

No pickles: loading an artifact runs no code from it. Writing is atomic (a temporary
directory renamed into place), so a killed training run never leaves half a model where
a server loads from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from temporec.contract.errors import FailedPrecondition, InvalidArgument
from temporec.contract.types import Catalog
from temporec.files import replaced_atomically
from temporec.model.checksums import Checksums, sha256
from temporec.model.item_index import INDEX_FILE, ItemIndex, model_index
from temporec.model.recommender import SequenceRecommender

FORMAT = 1  # what save_model writes for a full artifact
COMPACT_FORMAT = 2  # an artifact whose item vectors are a fixed table (Manifest.item_table)
READABLE_FORMATS = (FORMAT, COMPACT_FORMAT)
MANIFEST, WEIGHTS, CATALOG = "manifest.json", "model.safetensors", "catalog.jsonl"
CATALOG_COLUMNS = "catalog.json"  # a compact artifact's catalog
ENCODER_DIR = "encoder"  # a tuned language model, a Hugging Face model directory
TUNED = "text_encoder."  # its weights' prefix in the training model, saved in ENCODER_DIR instead

log = logging.getLogger(__name__)
_sha256 = sha256  # the name this module had for it


@dataclass
class Manifest:
    domain: str
    head: str
    encoder: str  # registered encoder name
    encoder_model_id: str  # the vector space of the stored text embeddings
    dim: int
    max_len: int
    actions: list[str]
    head_options: dict = field(default_factory=dict)
    use_text: bool = True
    use_ids: bool = True
    item_features: list[str] = field(default_factory=list)  # categorical catalog features embedded
    dropout: float = 0.1
    similarity: str = "dot"  # how states score items (temporec.model.recommender.SIMILARITIES)
    temperature: float = 1.0
    text_projection: str = "linear"  # or "adaptor" (temporec.model.text_adaptor)
    adaptor_experts: int = 8
    scale_ids: bool = False  # the Transformer parameterisation of the ids (SequenceRecommender)
    repeat_aware: bool = False  # the history's items get a learned bonus (temporec.model.repeats)
    # A model whose training tuned its language model: the ``local`` encoder options that run
    # the tuned encoder saved in the artifact (``model`` relative to the artifact), and how it
    # was tuned. Empty: the text embeddings are the named encoder's own.
    tuned_encoder: dict = field(default_factory=dict)
    data_name: str = ""  # where the training data came from (a path for data read from disk)
    data_fingerprint: str = ""
    training: dict = field(default_factory=dict)  # the training settings (TrainConfig)
    metrics: dict[str, float] = field(default_factory=dict)
    version: str = ""  # set by save_model when empty
    created: str = ""
    format: int = FORMAT
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    # A compact artifact: the item vectors' table ("dtype") and the text embeddings' width
    # ("text_dim", for the projection of texts outside the catalog). Empty: a full artifact.
    item_table: dict = field(default_factory=dict)
    # The index of the item vectors (INDEX_FILE): {"kind": "ivf", "lists", "probe"} or
    # {"kind": "flat"}, and "recall", what its proposals found as it was built (``item_index``).
    item_index: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.domain, self.head, self.encoder)

    @property
    def tuned_encoder_id(self) -> str:
        """The vector space of a tuned language model: its base and mode, and the start of
        its weights' checksum, so that no other tuning (another run, another artifact) can
        pass for it. The Triton model that ``temporec export-triton --artifact`` writes
        announces it; an encoder standing in for the model must. Empty: nothing was tuned."""
        if not self.tuned_encoder:
            return ""
        weights = self.files.get(f"{self.tuned_encoder['model']}/{WEIGHTS}", "")
        return f"{self.encoder_model_id}@{weights[:12]}"


@dataclass
class LoadedModel:
    manifest: Manifest
    model: SequenceRecommender
    catalog: Catalog
    popularity: torch.Tensor  # (n_items,) interaction counts in the training data
    path: Path
    index: ItemIndex | None = None  # the approximate index, when the artifact has one

    @property
    def version(self) -> str:
        return self.manifest.version


def _write_catalog(path: Path, catalog: Catalog) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i, (item, text) in enumerate(zip(catalog.item_ids, catalog.texts)):
            row = {"item_id": item, "text": text}
            row.update({name: values[i] for name, values in catalog.features.items()})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_catalog_columns(path: Path, catalog: Catalog) -> None:
    columns = {"item_ids": catalog.item_ids, "texts": catalog.texts, "features": catalog.features}
    path.write_text(json.dumps(columns, ensure_ascii=False), encoding="utf-8")


def _read_catalog_columns(path: Path) -> Catalog:
    columns = json.loads(path.read_text(encoding="utf-8"))
    return Catalog(columns["item_ids"], columns["texts"], columns["features"])


def _catalog_file(manifest: Manifest) -> str:
    return CATALOG_COLUMNS if manifest.item_table else CATALOG


def _read_catalog(path: Path) -> Catalog:
    ids, texts, features = [], [], {}
    with open(path, encoding="utf-8") as f:
        for row in map(json.loads, f):
            ids.append(row.pop("item_id"))
            texts.append(row.pop("text"))
            for name, value in row.items():
                features.setdefault(name, []).append(value)
    return Catalog(ids, texts, features)


def save_model(
    root: str | os.PathLike,
    manifest: Manifest,
    model: SequenceRecommender,
    catalog: Catalog,
    popularity: torch.Tensor,
    index: ItemIndex | None = None,
    encoder_dir: Path | None = None,
) -> Path:
    """Write an artifact under ``root`` as ``<domain>-<head>-<version>`` and return its
    path; ``index``: the approximate index of the model's item vectors, to keep with it;
    ``encoder_dir``: a tuned language model already saved (another artifact's), copied in
    as it is when the model holds none (``model.text_encoder``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest.created = manifest.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest.version = (
        manifest.version or f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{manifest.data_fingerprint[:8]}"
    )
    if model.frozen_items:
        dtype = str(model.item_table.dtype).removeprefix("torch.")
        manifest.item_table = {"dtype": dtype, "text_dim": model.text_dim}
        manifest.format = COMPACT_FORMAT
    final = root / f"{manifest.domain}-{manifest.head}-{manifest.version}"
    with replaced_atomically(final, directory=True) as staging:
        state = model.state_dict()
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.items() if not k.startswith(TUNED)}
        tensors["popularity"] = popularity.float().cpu().contiguous()
        save_file(tensors, staging / WEIGHTS)
        write = _write_catalog_columns if manifest.item_table else _write_catalog
        write(staging / _catalog_file(manifest), catalog)
        names = [WEIGHTS, _catalog_file(manifest)]
        if index is not None:
            index.save(staging / INDEX_FILE)
            manifest.item_index = index.describe()
            names.append(INDEX_FILE)
        if model.text_encoder is not None:
            model.text_encoder.save(staging / ENCODER_DIR)
        elif encoder_dir is not None:
            shutil.copytree(encoder_dir, staging / ENCODER_DIR)
        if (staging / ENCODER_DIR).is_dir():
            names += sorted(
                p.relative_to(staging).as_posix() for p in (staging / ENCODER_DIR).rglob("*") if p.is_file()
            )
        manifest.files = {name: sha256(staging / name) for name in names}
        (staging / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return final


def read_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    try:
        data = json.loads((path / MANIFEST).read_text())
        if data.get("format") not in READABLE_FORMATS:
            raise FailedPrecondition(
                f"{path}: artifact format {data.get('format')!r}, this server reads {', '.join(map(str, READABLE_FORMATS))}"
            )
        return Manifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise FailedPrecondition(f"{path}: unreadable manifest: {exc}") from exc


def load_model(path: str | os.PathLike, heads: dict[str, type]) -> LoadedModel:
    """Load one artifact, checking file checksums; ``heads`` maps head names to classes.
    A corrupt, truncated or incompatible artifact raises FailedPrecondition naming it."""
    path = Path(path)
    manifest = read_manifest(path)
    check_files(path, manifest, required=(WEIGHTS, _catalog_file(manifest)))
    if manifest.head not in heads:
        raise FailedPrecondition(f"{path}: head {manifest.head!r} is not installed (installed: {sorted(heads)})")
    try:
        return _build(path, manifest, heads[manifest.head])
    except FailedPrecondition:
        raise
    except Exception as exc:  # weights that do not fit the manifest, options the head refuses, ...
        raise FailedPrecondition(f"{path}: incompatible artifact: {type(exc).__name__}: {exc}") from exc


def check_files(path: Path, manifest: Manifest, required: tuple[str, ...] = (), under: str = "") -> None:
    """Each of the manifest's files (those ``under`` a directory, with ``under``) is there
    and matches its checksum, and ``required`` ones are listed; FailedPrecondition otherwise."""
    unlisted = sorted(set(required) - set(manifest.files))
    if unlisted:
        raise FailedPrecondition(f"{path}: {MANIFEST} lists no checksum for {', '.join(unlisted)}")
    checksums = Checksums(path)
    for name, expected in manifest.files.items():
        if name.startswith(under) and (not (path / name).is_file() or checksums.sha256(name) != expected):
            raise FailedPrecondition(f"{path}: {name} is missing or does not match its checksum")
    checksums.save()


def _build(path: Path, manifest: Manifest, head_class: type) -> LoadedModel:
    """The model an artifact describes, from files whose checksums were verified."""
    tensors = load_file(path / WEIGHTS)
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    table = manifest.item_table
    head = head_class(manifest.dim, manifest.max_len, **manifest.head_options)
    model = SequenceRecommender(
        head,
        torch.zeros(1, table["text_dim"]) if table else state["text_embeddings"],
        n_actions=len(manifest.actions),
        use_text=manifest.use_text,
        use_ids=manifest.use_ids,
        dropout=manifest.dropout,
        item_features={
            name: torch.zeros(1, dtype=torch.long) if table else state[f"item_features.{name}.values"]
            for name in manifest.item_features
        },
        similarity=manifest.similarity,
        temperature=manifest.temperature,
        text_projection=manifest.text_projection,
        adaptor_experts=manifest.adaptor_experts,
        scale_ids=manifest.scale_ids,
        repeat_aware=manifest.repeat_aware,
    )
    if table:
        model.freeze_items(state["item_table"], getattr(torch, table["dtype"]))
        if "item_ids.weight" in state:  # a scale_ids model keeps its id embeddings
            model.item_ids = torch.nn.Embedding(*state["item_ids.weight"].shape)
    model.load_state_dict(state)
    model.eval()
    read = _read_catalog_columns if table else _read_catalog
    catalog, popularity = read(path / _catalog_file(manifest)), tensors["popularity"]
    if not len(catalog) == model.n_items == len(popularity):
        raise FailedPrecondition(
            f"{path}: {_catalog_file(manifest)} has {len(catalog)} items, the weights {model.n_items}, the popularity {len(popularity)}"
        )
    index = ItemIndex.load(path / INDEX_FILE, manifest.item_index.get("probe")) if manifest.item_index else None
    return LoadedModel(manifest, model, catalog, popularity, path, index)


def compact_artifact(
    path: str | os.PathLike,
    root: str | os.PathLike,
    heads: dict[str, type],
    dtype: str = "float16",
    index: str | None = None,
    lists: int | None = None,
    probe: int | None = None,
) -> Path:
    """Save the artifact at ``path`` again under ``root``, compact: its catalog's item
    vectors as one ``dtype`` table, computed now, in place of the text embeddings, id
    embeddings and feature values (``SequenceRecommender.freeze_items``). For serving: a
    million-item catalog's artifact shrinks from gigabytes to its (n_items, dim) table and
    starts without computing the vectors. Its version is the original's plus "-compact"
    (so it is the newer of the two). A tuned language model is copied as it is, checksums
    and so vector space unchanged (``Manifest.tuned_encoder_id``): it still embeds the texts
    outside the catalog. ``index``: build an index of its item vectors too, "ivf" or "flat"
    (``item_index.model_index``: ``lists``, ``probe``, calibrated when None)."""
    loaded = load_model(path, heads)
    manifest = loaded.manifest
    if dtype not in ("float16", "bfloat16", "float32"):
        raise InvalidArgument(f"dtype: {dtype!r}; allowed: float16, bfloat16, float32")
    loaded.model.freeze_items(dtype=getattr(torch, dtype))
    compact = replace(manifest, version=f"{manifest.version}-compact", files={}, item_index={})
    built = model_index(loaded.model, index, lists, probe) if index else None
    encoder = loaded.path / manifest.tuned_encoder["model"] if manifest.tuned_encoder else None
    return save_model(root, compact, loaded.model, loaded.catalog, loaded.popularity, built, encoder)


def find_artifacts(root: str | os.PathLike) -> list[Path]:
    """Artifact directories directly under ``root`` (staging directories excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith("."))
