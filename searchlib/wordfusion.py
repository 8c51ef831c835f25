"""Fusing the words read in images into a text query's ranking.

A query such as "pharmacy" should find the photo of the PHARMACY sign first even where CLIP ranks
it lower, and a query such as "a red circle" should lose nothing. Both rankings are fused by
reciprocal rank fusion (RRF: each list adds ``1 / (RRF_K + rank)``): the CLIP ranking of the best
``FUSION_DEPTH`` hits, and the images whose read text holds the query's words, ranked by the share
of the words found. An image in only one list gets that list's share; one in both rises. Queries
whose words are in no image's text keep the CLIP ranking exactly, since the second list is empty.
Measured in benchmarks/bench_ocr.py (P@1 on word queries, P@5 on scene queries against CLIP alone).
"""

from __future__ import annotations

from .ocr import fold

#: RRF's constant (the usual 60: a rank difference near the top counts, deep ranks flatten out).
RRF_K = 60
#: How deep each list is fused.
FUSION_DEPTH = 100
#: Words that name nothing written (a query says "a photo of a sign that says X").
STOPWORDS = frozenset("""a an the of in on at to for and or with without from by near under over
this that these those is are was were be it its photo photos picture pictures image images shot
sign signs says saying written text word words""".split())


def query_words(texts: list[str]) -> list[str]:
    """The words of the query texts worth looking up in read text: folded, three characters or
    more, not stopwords, in order, once each."""
    words: list[str] = []
    for t in texts:
        for part in t.split():
            w = fold(part.strip(".,;:!?\"'()[]{}"))
            if len(w) >= 3 and w not in STOPWORDS and w not in words:
                words.append(w)
    return words


def fuse(clip_ids: list[int], word_matches: list[tuple[int, float]]) -> list[int]:
    """Ids ordered by reciprocal rank fusion of the CLIP ranking and the word matches
    (``(id, share of words found)``, best first). Ids only in the word list rank below every CLIP
    rank there is (``len(clip_ids) + 1``) on the CLIP side."""
    scores: dict[int, float] = {}
    for rank, image_id in enumerate(clip_ids, 1):
        scores[image_id] = 1.0 / (RRF_K + rank)
    missing = len(clip_ids) + 1
    text_rank, previous = 0, None
    for position, (image_id, share) in enumerate(word_matches, 1):
        if share != previous:  # equal shares share a rank
            text_rank, previous = position, share
        scores[image_id] = scores.get(image_id, 1.0 / (RRF_K + missing)) + 1.0 / (RRF_K + text_rank)
    order = {image_id: i for i, image_id in enumerate(clip_ids)}
    return sorted(scores, key=lambda i: (-scores[i], order.get(i, len(order)), i))
