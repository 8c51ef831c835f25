"""A torch-free text encoder: the model's text tower exported to ONNX, run by onnxruntime.

A search in a new process then pays for onnxruntime and this file instead of ``import torch`` and
the whole model. The export lives in the index directory beside a JSON note naming the model it
came from, its tokenizer and the file's checksum; a note that is unreadable, names another model,
or whose checksum does not match means the export is not used (the full model answers, and the
export is made again). Outputs match open_clip's ``encode_text`` (cosine >= 0.999, tested).

Where the tower allows it (causal attention, pooled at the end-of-text or first token: the CLIP
text towers), the export takes any number of tokens, and a query is run over its tokens only, not
the padding up to the context length: a position sees only the ones before it, so the padding
cannot change the vector, and a five-token query costs a fifteenth of the full 77-token pass.

Exports are also kept per model in the user cache (``SEARCHLIB_CACHE``), so a second index of the
same model copies the file instead of exporting again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from . import checked
from .backends import cache_dir, mha_fastpath_off
from .locks import cache_lock
from .models import ModelIdentity
from .tempfiles import replace_with_copy, temp_beside
from .tokenizing import TOKENIZER_FILES, load_tokenizer, save_tokenizer, tokenizer_kind
from .vectors import checksum, file_checksum

log = logging.getLogger(__name__)

ONNX_FILE = "text_encoder.onnx"
#: The fp32 tower's weights, kept beside its graph (ONNX external data): ONNX Runtime maps this file
#: instead of parsing and copying the weights out of the graph file, which took most of a cold
#: query's time with ViT-B-32 (254 MB of weights).
WEIGHTS_FILE = "text_encoder.weights"
#: Where the graph names its weights file's checksum (covered by the graph file's own checksum).
WEIGHTS_CHECKSUM_KEY = "searchlib.weights_checksum"
NOTE_FILE = "text_encoder.json"
#: The export's format. 2: the token axis is dynamic where the tower allows cutting the padding
#: (the note's ``trim``). 3: the weights are in :data:`WEIGHTS_FILE`. An older export still answers
#: queries; the next index run exports again.
EXPORT_VERSION = 3
#: How close the cut tower must come to ``encode_text`` over the full context before it is
#: exported that way (float32 both: only rounding differs).
TRIM_MIN_COSINE = 0.99999


def _key(identity: ModelIdentity) -> dict:
    return {"arch": identity.arch, "pretrained": identity.pretrained,
            "weights_sha256": identity.weights_sha256, "dim": identity.dim}


def weights_file_for(file: str) -> str:
    """The weights file beside the tower graph ``file`` (``text_encoder.int8.onnx`` ->
    ``text_encoder.int8.weights``; the fp32 one's is :data:`WEIGHTS_FILE`)."""
    return file.removesuffix(".onnx") + ".weights"


def tower_files(directory: Path, graph: str) -> list[str]:
    """The files of the tower ``graph`` in ``directory``, in the order to copy them: its weights
    file (towers exported before format 3 have none) before the graph that names it."""
    weights = weights_file_for(graph)
    return [weights, graph] if (directory / weights).is_file() else [graph]


def cache_folder(identity: ModelIdentity) -> Path:
    """Where exports of this model are kept in the user cache (``SEARCHLIB_CACHE``)."""
    import hashlib

    key = hashlib.sha256(json.dumps(_key(identity), sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "text" / f"{identity.arch}-{key}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half written)."""
    tmp = temp_beside(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def _cut_forward(model):
    """``encode_text`` over tokens cut after the last one that is not padding, for text towers
    where that gives the same vector, else None.

    That holds where attention is causal (position i sees positions <= i only, so the padding after
    the text changes nothing before it) and the vector is taken at the end-of-text token (its id is
    the largest: ``argmax``; or ``eos``) or at the first one: open_clip's CLIP text towers. It does
    not hold for bidirectional towers (SigLIP's, the bundled model's) or pooling at the last
    position, nor is it tried for Hugging Face towers: those are exported over the full context.
    """
    import torch
    from open_clip.transformer import TextTransformer, text_global_pool

    text = getattr(model, "text", None)
    if isinstance(text, TextTransformer):  # CustomTextCLIP
        parts, pool, eos = text, text.pool_type, getattr(text, "eos_id", None)
        if text.cls_emb is not None or getattr(text, "use_pad_mask", False):
            return None
    elif all(hasattr(model, name) for name in ("token_embedding", "positional_embedding", "transformer",
                                               "ln_final", "text_projection")):  # CLIP: the tower inline
        parts, pool, eos = model, getattr(model, "text_pool_type", "argmax"), getattr(model, "text_eos_id", None)
    else:
        return None
    mask = getattr(parts, "attn_mask", None)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or pool not in ("argmax", "eos", "first"):
        return None

    def forward(tokens):
        n = tokens.shape[1]
        cast = parts.transformer.get_cast_dtype()
        x = parts.token_embedding(tokens).to(cast) + parts.positional_embedding[:n].to(cast)
        x = parts.transformer(x, attn_mask=mask[:n, :n])
        x = parts.ln_final(x)
        x = text_global_pool(x, tokens, pool, eos_token_id=eos)
        projection = parts.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection

    return forward


def _plain_attention(mha):
    """Self-attention with the weights of ``mha`` (an ``nn.MultiheadAttention``), written with shapes
    the ONNX tracer keeps dynamic: torch's own code bakes the traced token count into a reshape,
    so a tower exported through it would take one length only. None where ``mha`` is of a kind
    this does not cover."""
    import torch
    import torch.nn.functional as F

    if not (isinstance(mha, torch.nn.MultiheadAttention) and mha.kdim == mha.vdim == mha.embed_dim
            and mha.in_proj_weight is not None and mha.bias_k is None and not mha.add_zero_attn):
        return None

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, query, key=None, value=None, need_weights=False, attn_mask=None, **_):
            x = query if mha.batch_first else query.transpose(0, 1)  # (batch, tokens, width)
            q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (t.unflatten(-1, (mha.num_heads, -1)).transpose(1, 2) for t in (q, k, v))
            scores = (q @ k.transpose(-2, -1)) * (mha.head_dim ** -0.5)
            if attn_mask is not None:
                scores = scores + attn_mask
            out = mha.out_proj((scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2))
            return (out if mha.batch_first else out.transpose(0, 1)), None

    return Plain()


def _swap_attention(model) -> list:
    """Put :func:`_plain_attention` in place of the attention of every block of the text tower.
    Returns [(block, original)] to put back; empty (nothing swapped) where one does not fit."""
    swapped = []
    tower = getattr(model, "text", model)
    for block in getattr(getattr(tower, "transformer", None), "resblocks", []):
        plain = _plain_attention(getattr(block, "attn", None))
        if plain is None:
            for done, original in swapped:
                done.attn = original
            return []
        swapped.append((block, block.attn))
        block.attn = plain
    return swapped


def _export_onnx(embedder, folder: Path, context_length: int, allow_cut: bool = True) -> None:
    """Export the text tower of ``embedder`` into ``folder`` (ONNX file, tokenizer files, note).

    Where :func:`_cut_forward` applies, the tower is exported over any number of tokens, then
    checked: the ONNX file run over each probe text's own tokens must give ``encode_text``'s vector
    over the full context (:data:`TRIM_MIN_COSINE`); otherwise (or without ``allow_cut``: the
    benchmark's before) it is exported over the full context.
    """

    identity = embedder.identity
    model = embedder.reference_model()
    tokenizer = embedder.tokenizer()
    tokens = np.asarray(tokenizer(["a photo"]))
    pad_id = int(tokens[0, -1])  # what fills a short text's tokens up to the context length
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ONNX_FILE}.{os.getpid()}.tmp"
    was_device = embedder.device
    try:
        model = model.to("cpu").float().eval()
        cut = _cut_forward(model) if allow_cut else None
        if cut is not None:
            try:
                _export_graph(model, cut, tokens, pad_id, tmp)
                agreement = _check_cut_file(model, tmp, tokenizer, pad_id)
            except Exception as e:  # a layout this code does not know: the full context
                log.info("cannot export the text tower over cut tokens (%s: %s)", type(e).__name__, e)
                agreement = None
            if agreement is None or agreement < TRIM_MIN_COSINE:
                log.info("the text tower of %s is exported over the full context (cut tokens: cosine %s)",
                         identity.name, agreement)
                cut = None
        if cut is None:
            _export_graph(model, None, tokens, pad_id, tmp)
        optimize_onnx(tmp)
        split_weights(tmp, folder / WEIGHTS_FILE)
        os.replace(tmp, folder / ONNX_FILE)
    finally:
        tmp.unlink(missing_ok=True)
        model.to(was_device)
    kind = save_tokenizer(tokenizer, tokenizer_kind(identity.arch), folder)
    note = {**_key(identity), "context_length": context_length, "tokenizer": kind, "optimized": True,
            "version": EXPORT_VERSION, "trim": {"pad_id": pad_id} if cut is not None else None,
            "checksum": checksum(np.fromfile(folder / ONNX_FILE, dtype=np.uint8))}
    atomic_write_text(folder / NOTE_FILE, json.dumps(note))


def split_weights(graph: Path, weights: Path) -> None:
    """Move the weights of the ONNX file ``graph`` into ``weights`` (external data, named by its
    file name: it must end up in the graph's folder), and record their checksum in the graph.

    The weights are written under a temporary name and renamed into place; the graph is rewritten
    in place, so it should be a temporary file too (renamed into place by the caller, after this).
    """
    import onnx

    model = onnx.load(str(graph))
    tmp = temp_beside(weights)
    try:
        # Tensors of 1 kB and more go to the weights file, at page-aligned offsets where large.
        onnx.save_model(model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=tmp.name, size_threshold=1024)
        for tensor in model.graph.initializer:  # saved: they now name the temporary file
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = weights.name
        # Its own record (an int8 graph quantized from the fp32 one arrives with the fp32 record).
        kept = [(p.key, p.value) for p in model.metadata_props if p.key != WEIGHTS_CHECKSUM_KEY]
        del model.metadata_props[:]
        for key, value in [*kept, (WEIGHTS_CHECKSUM_KEY, file_checksum(tmp))]:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save_model(model, str(graph))  # the graph alone: the tensors hold no data now
        os.replace(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)


def weights_checksum_of(session) -> str | None:
    """The checksum a loaded tower's graph names for its weights file (None: weights inside)."""
    return session.get_modelmeta().custom_metadata_map.get(WEIGHTS_CHECKSUM_KEY)


def tower_problem(directory: Path, file: str, expected: str) -> str | None:
    """What is wrong with the tower ``file`` in ``directory`` (its graph must have the checksum
    ``expected``; the weights file it names, the checksum the graph records), or None. Hashes
    every byte (``searchlib verify``; quantizing)."""
    import onnx

    if file_checksum(directory / file) != expected:
        return f"{file} does not match its checksum"
    model = onnx.load(str(directory / file), load_external_data=False)
    named = {p.key: p.value for p in model.metadata_props}.get(WEIGHTS_CHECKSUM_KEY)
    if named is not None:
        weights = directory / weights_file_for(file)
        if not weights.is_file():
            return f"{weights.name} is missing"
        if file_checksum(weights) != named:
            return f"{weights.name} does not match its checksum"
    return None


def _export_graph(model, cut, tokens: np.ndarray, pad_id: int, path: Path) -> None:
    """Trace the tower into ``path``: ``cut`` (any number of tokens) or ``encode_text``."""
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, tokens):
            return cut(tokens) if cut is not None else self.clip.encode_text(tokens)

    axes = {0: "batch", 1: "length"} if cut is not None else {0: "batch"}
    example = tokens[:, :int(token_lengths(tokens, pad_id)[0])] if cut is not None else tokens
    swapped = _swap_attention(model) if cut is not None else []
    try:
        with torch.no_grad(), mha_fastpath_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes about ops it rewrites
            # eval(): the exporter puts the wrapper's training flag back on the whole model after.
            torch.onnx.export(TextTower(model).eval(), (torch.as_tensor(example, dtype=torch.long),), str(path),
                              input_names=["tokens"], output_names=["embedding"],
                              dynamic_axes={"tokens": axes, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
    finally:
        for block, original in swapped:
            block.attn = original


def token_lengths(tokens: np.ndarray, pad_id: int) -> np.ndarray:
    """Per row of ``tokens``, the count up to and including its last token that is not padding
    (at least 1)."""
    content = np.asarray(tokens) != pad_id
    last = content.shape[1] - np.argmax(content[:, ::-1], axis=1)
    return np.where(content.any(axis=1), last, 1)


def _check_cut_file(model, path: Path, tokenizer, pad_id: int) -> float:
    """The lowest cosine between the ONNX file at ``path`` run over each probe text's own tokens
    (alone, and with the others of its length) and the model's ``encode_text`` over the full
    context: texts of every length, an empty one and one cut at the context length among them."""
    import onnxruntime as ort
    import torch

    from .vectormath import normalize

    texts = ["", "a", "a photo", "a red circle", "a red square", "Two dogs on a BEACH at sunset!!",
             "数字 🐱 &amp; <b>", "a very long caption about a red bicycle leaning against a blue wall " * 2,
             "x " * 200]
    tokens = np.asarray(tokenizer(texts))
    with torch.no_grad():
        full = normalize(model.encode_text(torch.as_tensor(tokens, dtype=torch.long)).float().numpy())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    lengths = token_lengths(tokens, pad_id)
    worst = 1.0
    for n in np.unique(lengths):
        rows = np.flatnonzero(lengths == n)
        together = normalize(session.run(None, {"tokens": np.ascontiguousarray(tokens[rows, :n])})[0])
        worst = min(worst, float((together * full[rows]).sum(axis=1).min()))
        for row in rows:
            alone = normalize(session.run(None, {"tokens": np.ascontiguousarray(tokens[row:row + 1, :n])})[0])
            worst = min(worst, float((alone[0] * full[row]).sum()))
    return worst


def export_text_encoder(embedder, directory: Path) -> bool:
    """Put ``embedder``'s text tower (ONNX) and tokenizer into ``directory``; False if unsupported.

    Exported once per model into the user cache and copied from there.
    """
    from .tokenizing import context_length_of

    identity = embedder.identity
    kind = tokenizer_kind(identity.arch)
    if kind is None:
        return False
    cached = cache_folder(identity)
    note = _read_note(cached, identity)
    if note is not None and tower_problem(cached, ONNX_FILE, note["checksum"]) is not None:
        log.warning("the cached text tower in %s is damaged: exporting it again", cached)
        remove_export(cached)
    if not _current(_read_note(cached, identity)):
        cached.mkdir(parents=True, exist_ok=True)
        with cache_lock(cached, wait=600) as locked:
            if locked and not _current(_read_note(cached, identity)):
                log.info("exporting the text tower of %s (once per model)", identity.name)
                _export_onnx(embedder, cached, context_length_of(identity.arch))
    if not _current(_read_note(cached, identity)):  # an unwritable cache: export straight into the index
        _export_onnx(embedder, directory, context_length_of(identity.arch))
        return True
    with cache_lock(directory) as locked:
        if not locked:
            return False
        # The weights before the graph that names them, the note last.
        names = [*tower_files(cached, ONNX_FILE), *TOKENIZER_FILES.get(_read_note(cached, identity)["tokenizer"], ())]
        for name in names:
            replace_with_copy(cached / name, directory / name)
        atomic_write_text(directory / NOTE_FILE, (cached / NOTE_FILE).read_text())
    log.info("text tower of %s is in %s", identity.name, directory / ONNX_FILE)
    return True


def optimize_onnx(path: Path) -> None:
    """Rewrite the graph with onnxruntime's portable (extended) optimizations applied once, so a
    cold query skips them when it loads the file (271 ms instead of 485 ms for ViT-B-32's tower)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path) + ".opt"
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    os.replace(str(path) + ".opt", path)


def _read_note(directory: Path, identity: ModelIdentity) -> dict | None:
    """The note of an export in ``directory`` if it is whole and made from ``identity``'s model."""
    try:
        note = json.loads((directory / NOTE_FILE).read_text())
        if not isinstance(note, dict) or {k: note.get(k) for k in _key(identity)} != _key(identity):
            return None
        int(note["context_length"])
        if not str(note.get("checksum")).startswith("xxh3_128:") or not (directory / ONNX_FILE).is_file():
            return None  # no checksum, or one from an older searchlib: export again
        if note.get("tokenizer") not in ("clip-bpe", "hf", "sentencepiece"):
            return None
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return note


def read_export_note(directory: Path, identity: ModelIdentity) -> dict | None:
    """The note of a usable export in ``directory`` for this model (None if there is none)."""
    return _read_note(directory, identity)


def read_checksum(directory: Path) -> str | None:
    """The checksum the note in ``directory`` records for the ONNX file."""
    try:
        return json.loads((directory / NOTE_FILE).read_text()).get("checksum")
    except (OSError, ValueError, AttributeError):
        return None


def remove_export(directory: Path) -> None:
    """Delete the export in ``directory`` (the note first: a half-removed export is never used)."""
    for name in (NOTE_FILE, ONNX_FILE, WEIGHTS_FILE):
        (directory / name).unlink(missing_ok=True)


def export_is_current(directory: Path, identity: ModelIdentity) -> bool:
    """Whether ``directory`` holds a usable export for this model (its checksum is checked on load)."""
    return _read_note(directory, identity) is not None


def _current(note: dict | None) -> bool:
    return note is not None and note.get("version") == EXPORT_VERSION


def export_is_up_to_date(directory: Path, identity: ModelIdentity) -> bool:
    """Whether ``directory`` holds a usable export of this searchlib's format (an older one answers
    queries, over the full context; the next index run exports again)."""
    return _current(_read_note(directory, identity))


class OnnxTextEncoder:
    """Embeds texts with the exported text tower; returns unit-norm float32 rows.

    Args:
        directory: the folder holding the tower and its tokenizer.
        note: the fp32 export's note (tokenizer, context length).
        file: which tower file: the fp32 export (:data:`ONNX_FILE`) or the int8 one
            (:data:`searchlib.textquant.INT8_FILE`).
        checksum: the checksum ``file`` must have (the note's for the fp32 file).
        prepack: let ONNX Runtime repack the weights for its matrix products when it loads them:
            about twice as fast per query (ViT-B-32: 14 against 28 ms on 2 cores), but a copy of
            every weight to make (0.17 s of a cold query). Without it, the weights file is only
            mapped. Vectors differ between the two by about 1e-6 (another order of summation).
    """

    def __init__(self, directory: Path, note: dict, file: str = ONNX_FILE, checksum: str | None = None,
                 prepack: bool = True):
        import onnxruntime as ort

        self.file = file
        self.prepack = prepack
        self.checksum = checksum or note["checksum"]
        self.tower = "fp32" if file == ONNX_FILE else "int8"
        trim = note.get("trim")
        #: The padding id when the tower runs over a text's own tokens only (None: the full context).
        self.pad_id: int | None = int(trim["pad_id"]) if isinstance(trim, dict) else None

        options = ort.SessionOptions()
        if note.get("optimized"):  # optimized at export time: loading skips the graph passes
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        options.log_severity_level = 3
        # Idle threads sleep instead of spinning: the vector search runs right after on the same cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        # The session loads (in C++, without the GIL) while the tokenizer builds its tables here.
        created: dict = {}

        def create() -> None:
            try:
                # From the path (onnxruntime maps it: faster than handing it bytes), then the
                # checksum, over pages the session just brought into the cache (or not at all:
                # the file is unchanged since it last matched, searchlib/checked.py).
                session = ort.InferenceSession(str(directory / file), options,
                                               providers=["CPUExecutionProvider"])
                if not checked.matches(directory / file, self.checksum, file_checksum):
                    raise ValueError("the file does not match its checksum (damaged)")
                weights = weights_checksum_of(session)  # named by the graph just checked
                weights_file = directory / weights_file_for(file)
                if weights is not None and not checked.matches(weights_file, weights, file_checksum):
                    raise ValueError(f"{weights_file.name} does not match its checksum (damaged)")
                created["session"] = session
            except Exception as e:  # re-raised below, in the caller's thread
                created["error"] = e

        loader = threading.Thread(target=create, name="searchlib-load-text-encoder")
        loader.start()
        try:
            self.tokenizer = load_tokenizer(note["tokenizer"], directory, int(note["context_length"]))
        finally:
            loader.join()
        if "error" in created:
            raise created["error"]
        self.session = created["session"]

    @classmethod
    def for_index(cls, directory: Path, identity: ModelIdentity, prepack: bool = True) -> OnnxTextEncoder | None:
        """The index's exported (fp32) encoder if present, whole and made from ``identity``'s
        model, else None. (:class:`searchlib.encoders.IndexModel` first tries the int8 tower,
        :func:`searchlib.textquant.load_int8`.)"""
        note = _read_note(directory, identity)
        if note is None:
            return None
        try:
            return cls(directory, note, prepack=prepack)
        except Exception as e:  # a damaged file: fall back to the torch path
            log.warning("cannot use %s (%s); using the full model", directory / ONNX_FILE, e)
            return None

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        from .vectormath import normalize

        if not texts:
            raise ValueError("no texts")
        tokens = self.tokenizer(list(texts))
        if self.pad_id is None:
            lengths = np.full(len(tokens), tokens.shape[1])
        else:
            lengths = token_lengths(tokens, self.pad_id)
        if self.tower == "int8":
            # Dynamic quantization scales activations per tensor, so a text's int8 vector would
            # depend on the other texts in its batch: one at a time, it is the same in every call
            # (the query vector cache and the gate rely on that).
            groups = [np.array([i]) for i in range(len(tokens))]
        else:  # texts of one length together: a text's vector never depends on a longer one's cut
            groups = [np.flatnonzero(lengths == n) for n in np.unique(lengths)]
        parts = [self.session.run(None, {"tokens": np.ascontiguousarray(tokens[rows, :lengths[rows[0]]])})[0]
                 for rows in groups]
        out = np.empty((len(tokens), parts[0].shape[1]), dtype=np.float32)
        for rows, part in zip(groups, parts):
            out[rows] = part
        return normalize(out)
