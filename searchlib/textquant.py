"""The int8 text tower: the exported ONNX text tower with dynamically quantized weights, used for
queries only where a fidelity gate, measured on the index's own vectors, lets it.

``onnxruntime.quantization.quantize_dynamic`` stores the weights of every MatMul as int8 (a
quarter of the file) and quantizes activations on the fly. On the 2-core machine ViT-B-32's tower
then loads and encodes faster (benchmarks/RESULTS.md, "Cold queries: the ladder"), but every
model quantizes differently, so the int8 tower answers only where the gate passes:

* **cosine**: the int8 vector of each of :func:`probe_texts` (a fixed few hundred captions, words
  and non-ASCII texts) against the fp32 tower's; the *minimum* over the probes must be at least
  :data:`MIN_COSINE`;
* **top-10 agreement**: for each probe, the share of the fp32 vector's 10 nearest stored vectors
  (a sample of up to :data:`GATE_SAMPLE` of the index's own) that the int8 vector also finds; the
  mean over the probes must be at least :data:`MIN_AGREEMENT`. Below ``2 * 10`` stored vectors the
  10 nearest are most of the collection and agree by construction, so the agreement is measured on
  the nearest half (``k = n // 2``); with fewer than 2 vectors there is nothing to rank and the
  gate rests on the cosine alone (``top10_agreement`` is None).

The gate runs at the end of an index run (``IndexWriter.finish``: the index's vectors exist then)
and again when the number of stored vectors has doubled or halved since, the fp32 tower changed,
the int8 file is missing (or found damaged then), or the thresholds changed. Its result (passed,
the cosines, the agreement, the probe count, when) is written to :data:`INT8_NOTE` beside the
towers and shown by ``searchlib info``. The probe vectors of both towers are kept in
:data:`PROBES_FILE`, so a gate run again encodes nothing; the int8 file and the probe vectors are
also kept in the user cache beside the fp32 export, so a second index of the same model quantizes
and encodes nothing either.

``SEARCHLIB_TEXT_INT8=0`` in the environment keeps queries on the fp32 tower and index runs from
making the int8 one; ``SEARCHLIB_TEXT_INT8=force`` makes queries use the int8 tower even where its
gate failed (for measuring it, as benchmarks/bench_startup.py does).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .models import ModelIdentity
from .tempfiles import replace_with_copy, temp_beside
from .textenc import tower_files, weights_file_for
from .vectors import file_checksum

log = logging.getLogger(__name__)

INT8_FILE = "text_encoder.int8.onnx"
#: Its weights, kept beside the graph as the fp32 tower's are (mapped, not copied, at load).
INT8_WEIGHTS = weights_file_for(INT8_FILE)
INT8_NOTE = "text_encoder.int8.json"
PROBES_FILE = "text_encoder.int8-probes.npz"
#: The environment variable that turns the int8 tower off (``0``).
ENV = "SEARCHLIB_TEXT_INT8"
MIN_COSINE = 0.99
MIN_AGREEMENT = 0.95
TOP_K = 10
#: Stored vectors drawn for the top-10 agreement (the exact top 10 over them is cheap: 20k x 512).
GATE_SAMPLE = 20_000
#: The version of :func:`probe_texts`: kept probe vectors of another version are encoded again.
PROBE_SET = 1

_EXTRA_PROBES = (
    "dog", "cat", "beach", "sunset", "mountain", "birthday party", "wedding", "receipt", "screenshot",
    "a", "the", "??", "!!!", "2019", "IMG_0042.JPG", "a photo of my passport", "snow in Paris",
    "Hund am Strand", "chien sur la plage", "perro en la playa", "cão na praia", "собака на пляже",
    "海辺の犬", "海滩上的狗", "해변의 개", "كلب على الشاطئ", "כלב על החוף", "समुद्र तट पर कुत्ता",
    "café crème brûlée", "naïve façade", "Zürich Hauptbahnhof", "🐱", "🐶 on a 🏖️", "数字 &amp; <b>",
    "  spaces\tand\nnewlines ", "don't stop'll", "x" * 300,
    "a very long caption about a red bicycle leaning against a blue wall in a narrow street of an "
    "old town on a sunny afternoon with people walking past and a dog sleeping in the shade",
)


def enabled() -> bool:
    """Whether the int8 tower may be made and used (``SEARCHLIB_TEXT_INT8=0`` says no)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "no", "false", "off")


@functools.lru_cache(maxsize=1)
def probe_texts() -> tuple[str, ...]:
    """The gate's fixed probe queries (the same every run): the relevance bank's generic captions,
    synthetic captions in English and Chinese, and words, languages, emoji and odd input."""
    from .relevance import BANK
    from .synthetic import generate

    texts = list(BANK) + list(_EXTRA_PROBES)
    for sample in generate(80, 25):
        texts.append(sample.caption)
        texts += [caption for lang, (caption, _) in (sample.captions or {}).items() if lang != "en"]
    return tuple(dict.fromkeys(texts))


def read_int8_note(directory: Path) -> dict | None:
    """The int8 tower's note in ``directory`` (its checksum, the fp32 checksum it was made from,
    the gate), or None when absent or unreadable."""
    try:
        note = json.loads((directory / INT8_NOTE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(note, dict) or not isinstance(note.get("gate"), dict) or not _whole_gate(note["gate"]):
        return None
    return note


def _whole_gate(gate: dict) -> bool:
    """Whether a gate read back has every figure, of its type (a hand-edited or garbled note is
    treated as absent: the next index run gates again)."""
    number = (int, float)
    kinds = {"passed": bool, "min_cosine": number, "mean_cosine": number, "p1_cosine": number,
             "top10_agreement": (*number, type(None)), "k": int, "probes": int, "vectors_sampled": int,
             "stored_vectors": int, "min_cosine_required": number, "min_agreement_required": number,
             "when": str, "reason": (str, type(None))}
    return all(isinstance(gate.get(key, ...), kind) for key, kind in kinds.items())


def forced() -> bool:
    """``SEARCHLIB_TEXT_INT8=force``: queries use the int8 tower even where its gate failed (to
    measure it; not for searching)."""
    return os.environ.get(ENV, "").strip().lower() == "force"


def int8_for_queries(directory: Path, fp32_checksum: str) -> dict | None:
    """The int8 note when queries here should use the int8 tower: enabled, made from this fp32
    tower, its file present, and its gate passed (or :func:`forced`). None means the fp32 tower."""
    if not enabled():
        return None
    note = read_int8_note(directory)
    if note is None or note.get("fp32_checksum") != fp32_checksum or not (note["gate"].get("passed") or forced()):
        return None
    if not str(note.get("checksum", "")).startswith("xxh3_128:") or not (directory / INT8_FILE).is_file():
        return None
    return note


def load_int8(directory: Path, fp32_note: dict, writable: bool = False, prepack: bool = True):
    """The int8 :class:`~searchlib.textenc.OnnxTextEncoder` where queries should use it
    (:func:`int8_for_queries`), else None. A damaged file (its checksum) gives None, with a log
    line, and (``writable``) is removed: the next index run makes it again. ``prepack``: see
    :class:`~searchlib.textenc.OnnxTextEncoder`."""
    from .textenc import OnnxTextEncoder

    note = int8_for_queries(directory, fp32_note["checksum"])
    if note is None:
        return None
    try:
        return OnnxTextEncoder(directory, fp32_note, INT8_FILE, note["checksum"], prepack=prepack)
    except Exception as e:  # a damaged file: the fp32 tower answers
        log.warning("cannot use the int8 text tower %s (%s); using the fp32 tower", directory / INT8_FILE, e)
        if writable:
            remove_int8(directory)
        return None


def remove_int8(directory: Path) -> None:
    """Delete the int8 tower in ``directory`` (the note first: a half-removed one is never used)."""
    for name in (INT8_NOTE, INT8_FILE, INT8_WEIGHTS, PROBES_FILE):
        (directory / name).unlink(missing_ok=True)


def quantize(source: Path, target: Path, weights: Path | None = None) -> None:
    """Write ``source``'s ONNX graph with int8 weights (dynamic quantization) to ``target``, then
    apply onnxruntime's portable optimizations once (a query loads it without graph passes).
    With ``weights`` (a path in ``target``'s folder), the weights go there
    (:func:`searchlib.textenc.split_weights`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .textenc import optimize_onnx

    # The exported graph is already optimized: its fused contrib ops carry no type information for
    # the quantizer's shape inference, hence the default tensor type (float).
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer's advice to pre-process, on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": 1})
    finally:
        root.setLevel(level)
    optimize_onnx(target)
    if weights is not None:
        from .textenc import split_weights

        split_weights(target, weights)  # records the int8 weights' checksum in place of the fp32 one's
    else:
        _drop_weights_checksum(target)


def _drop_weights_checksum(path: Path) -> None:
    """Remove the fp32 graph's record of its weights file, which the quantizer copies over: an
    int8 graph that keeps its weights inside has no weights file."""
    import onnx

    from .textenc import WEIGHTS_CHECKSUM_KEY

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != WEIGHTS_CHECKSUM_KEY]
    if len(kept) == len(model.metadata_props):
        return
    del model.metadata_props[:]
    for key, value in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, str(path))


def _needs_gate(directory: Path, note: dict | None, fp32_checksum: str, stored: int) -> bool:
    if note is None or note.get("fp32_checksum") != fp32_checksum or not (directory / INT8_FILE).is_file():
        return True
    gate = note["gate"]
    if (gate.get("min_cosine_required"), gate.get("min_agreement_required")) != (MIN_COSINE, MIN_AGREEMENT):
        return True
    then = int(gate.get("stored_vectors") or 0)
    # Re-measured when the collection doubled or halved (the agreement is about its neighbours).
    return stored > 2 * then or 2 * stored < then or then < 2 * TOP_K <= stored


def ensure_int8(directory: Path, fp32_note: dict, identity: ModelIdentity, stored: int,
                sample: Callable[[int], np.ndarray]) -> dict | None:
    """Make the int8 tower beside the fp32 export in ``directory`` if needed, and (re)run its gate.

    The int8 file and the probes' vectors are made once per fp32 tower and kept in the user cache
    beside the fp32 export (a second index of the model copies them); the gate itself (the
    agreement on this index's vectors) runs per index.

    Args:
        directory: the index directory holding a current fp32 export (note ``fp32_note``).
        identity: the index's model.
        stored: how many vectors the index stores now.
        sample: draws about ``n`` of the index's stored vectors.

    Returns the int8 note written (or the current one), None when disabled. An int8 file found
    damaged (its checksum) when the gate runs is made again.
    """
    from .textenc import atomic_write_text, cache_folder

    if not enabled():
        return None
    fp32_checksum = fp32_note["checksum"]
    note = read_int8_note(directory)
    if not _needs_gate(directory, note, fp32_checksum, stored):
        # No checksum here (an index run with nothing to do stays cheap): a query checks the file
        # when it loads it, and removes a damaged one's note, so the next run lands below.
        return note
    if note is not None and _problem(directory, note.get("checksum")) is not None:
        log.warning("the int8 text tower in %s is damaged: making it again", directory)
        remove_int8(directory)
        note = None
    cached = cache_folder(identity)
    if note is None or note.get("fp32_checksum") != fp32_checksum or not (directory / INT8_FILE).is_file():
        remove_int8(directory)
        if not _copy_kept(cached, directory, fp32_checksum):
            _quantize_into(directory, fp32_checksum)
    fp32_vectors, int8_vectors = _probe_vectors(directory, fp32_note)
    _keep(directory, cached, fp32_checksum)
    gate = run_gate(fp32_vectors, int8_vectors, sample(GATE_SAMPLE), stored)
    new_note = {"fp32_checksum": fp32_checksum, "checksum": file_checksum(directory / INT8_FILE), "gate": gate}
    atomic_write_text(directory / INT8_NOTE, json.dumps(new_note))
    if gate["passed"]:
        log.info("int8 text tower passed its gate (min cosine %.4f, top-%d agreement %s): queries use it",
                 gate["min_cosine"], gate["k"], gate["top10_agreement"])
    else:
        log.warning("int8 text tower failed its gate (%s): queries use the fp32 tower", gate["reason"])
    return new_note


def _quantize_into(directory: Path, fp32_checksum: str) -> None:
    from .textenc import ONNX_FILE, tower_problem

    problem = tower_problem(directory, ONNX_FILE, fp32_checksum)  # never quantize a damaged tower
    if problem is not None:
        raise ValueError(f"{directory}: {problem} (damaged)")

    tmp = temp_beside(directory / INT8_FILE)
    try:
        started = time.perf_counter()
        quantize(directory / ONNX_FILE, tmp, directory / INT8_WEIGHTS)
        os.replace(tmp, directory / INT8_FILE)
        log.info("quantized the text tower to int8 in %.1f s", time.perf_counter() - started)
    finally:
        tmp.unlink(missing_ok=True)
        (directory / f"{tmp.name}.opt").unlink(missing_ok=True)


def _kept_key(folder: Path) -> list | None:
    """``[fp32 checksum, int8 checksum, probe set]`` that made the probe vectors in ``folder``."""
    try:
        with np.load(folder / PROBES_FILE) as kept:
            key = json.loads(str(kept["key"]))
            shapes = kept["fp32"].shape, kept["int8"].shape
        if shapes[0] != shapes[1] or len(shapes[0]) != 2:
            return None
        return key if isinstance(key, list) and len(key) == 3 else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _copy_kept(cached: Path, directory: Path, fp32_checksum: str) -> bool:
    """Copy the int8 tower and its probe vectors kept in the user cache for this fp32 tower."""
    key = _kept_key(cached)
    if key is None or key[0] != fp32_checksum or key[2] != PROBE_SET:
        return False
    try:
        if _problem(cached, key[1]) is not None:
            return False
        for name in (*tower_files(cached, INT8_FILE), PROBES_FILE):  # the weights before their graph
            replace_with_copy(cached / name, directory / name)
    except OSError as e:
        log.info("could not copy the kept int8 text tower from %s (%s): quantizing", cached, e)
        return False
    return True


def _keep(directory: Path, cached: Path, fp32_checksum: str) -> None:
    """Keep the index's int8 tower and probe vectors in the user cache (once per fp32 tower)."""
    from .locks import cache_lock

    if _kept_key(cached) == _kept_key(directory):
        return
    try:
        cached.mkdir(parents=True, exist_ok=True)
        with cache_lock(cached) as locked:
            if not locked:
                return
            # The weights, their graph, and the probes (with the key) last: they vouch for the files.
            for name in (*tower_files(directory, INT8_FILE), PROBES_FILE):
                replace_with_copy(directory / name, cached / name)
    except OSError as e:  # only a cost: the next index of this model quantizes again
        log.info("could not keep the int8 text tower in %s (%s)", cached, e)


def _problem(directory: Path, checksum: str | None) -> str | None:
    """What is wrong with the int8 tower in ``directory`` (graph and weights), or None."""
    from .textenc import tower_problem

    if not (directory / INT8_FILE).is_file():
        return f"{INT8_FILE} is missing"
    return tower_problem(directory, INT8_FILE, str(checksum))



def _probe_vectors(directory: Path, fp32_note: dict) -> tuple[np.ndarray, np.ndarray]:
    """The probes' vectors by both towers: from :data:`PROBES_FILE` when it was made by these two
    files from this probe set, else encoded now (both towers) and kept there."""
    from .textenc import ONNX_FILE, OnnxTextEncoder

    int8_checksum = file_checksum(directory / INT8_FILE)
    key = [fp32_note["checksum"], int8_checksum, PROBE_SET]
    if _kept_key(directory) == key:
        with np.load(directory / PROBES_FILE) as kept:
            return kept["fp32"], kept["int8"]
    texts = probe_texts()
    fp32 = OnnxTextEncoder(directory, fp32_note, ONNX_FILE, fp32_note["checksum"]).embed_texts(texts)
    int8 = OnnxTextEncoder(directory, fp32_note, INT8_FILE, int8_checksum).embed_texts(texts)
    tmp = directory / f".{PROBES_FILE}.{os.getpid()}.tmp.npz"
    try:
        np.savez(tmp, key=np.array(json.dumps(key)), fp32=fp32, int8=int8)
        os.replace(tmp, directory / PROBES_FILE)
    except OSError as e:  # only a cost: the next gate encodes them again
        log.info("could not keep the gate's probe vectors (%s)", e)
        tmp.unlink(missing_ok=True)
    return fp32, int8


def top_k_agreement(fp32: np.ndarray, int8: np.ndarray, stored: np.ndarray, k: int) -> float:
    """Mean share of each fp32 query's ``k`` nearest ``stored`` vectors that the int8 query's ``k``
    nearest also hold (exact inner product)."""
    def nearest(queries: np.ndarray) -> np.ndarray:
        scores = queries @ stored.T
        return np.argpartition(-scores, k - 1, axis=1)[:, :k]

    a, b = nearest(fp32), nearest(int8)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())]))


def run_gate(fp32: np.ndarray, int8: np.ndarray, stored: np.ndarray, stored_count: int) -> dict:
    """The gate's figures and verdict for probe vectors by both towers and a sample of the index's
    stored vectors (see the module's docstring for the rules)."""
    min_cosine, min_agreement = MIN_COSINE, MIN_AGREEMENT
    cosines = np.sum(fp32.astype(np.float64) * int8, axis=1)
    stored = np.asarray(stored, dtype=np.float32)
    n = len(stored) if stored.ndim == 2 else 0
    k = TOP_K if n >= 2 * TOP_K else n // 2
    agreement = top_k_agreement(fp32, int8, stored, k) if k >= 1 else None
    reasons = []
    if float(cosines.min()) < min_cosine:
        reasons.append(f"min cosine {cosines.min():.4f} < {min_cosine}")
    if agreement is not None and agreement < min_agreement:
        reasons.append(f"top-{k} agreement {agreement:.3f} < {min_agreement}")
    return {"passed": not reasons, "reason": "; ".join(reasons) or None,
            "min_cosine": round(float(cosines.min()), 5), "mean_cosine": round(float(cosines.mean()), 5),
            "p1_cosine": round(float(np.percentile(cosines, 1)), 5),
            "top10_agreement": None if agreement is None else round(agreement, 4), "k": k,
            "probes": len(cosines), "vectors_sampled": n, "stored_vectors": stored_count,
            "min_cosine_required": min_cosine, "min_agreement_required": min_agreement,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
