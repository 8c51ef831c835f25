import random

import numpy as np

from searchlib.synthetic import COLORS, SHAPES, generate, make_sample, matches


def test_generation_is_deterministic_by_seed():
    a, b, c = generate(5, 1), generate(5, 1), generate(5, 2)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert np.array_equal(np.asarray(a[0].image), np.asarray(b[0].image))
    assert [s.caption for s in a] != [s.caption for s in c]


def test_variety_of_kinds_colors_counts_backgrounds():
    samples = generate(400, 3)
    assert {s.shape for s in samples} == set(SHAPES) and len(SHAPES) >= 8
    assert {s.color for s in samples} == set(COLORS) and len(COLORS) >= 10
    assert {s.count for s in samples} == {1, 2, 3}
    assert {s.background for s in samples} == {"plain", "gradient", "noise", "stripes", "texture", "photo"}
    assert len({s.caption for s in samples}) > 300
    assert len({s.caption_in("zh") for s in samples}) > 300


def test_caption_states_what_is_drawn():
    for s in generate(100, 4):
        assert "shape" in s.mentioned and "color" in s.mentioned
        assert matches(s, s)
        if s.count > 1:
            assert {2: "two", 3: "three"}[s.count] in s.caption


def test_matches_checks_only_stated_attributes():
    rng = random.Random(0)
    a = make_sample(rng, shape="circle", color="red", count=1)
    b = make_sample(rng, shape="circle", color="red", count=1)
    c = make_sample(rng, shape="square", color="red", count=1)
    a.mentioned = {"shape", "color", "count"}
    assert matches(a, b) and not matches(a, c)


def test_chinese_captions_state_what_is_drawn():
    from searchlib.synthetic import COLOR_ZH, SHAPE_ZH

    for s in generate(100, 6):
        text, mentioned = s.captions["zh"]
        assert {"shape", "color"} <= mentioned and matches(s, s, "zh")
        assert any(word in text for word in SHAPE_ZH[s.shape])
        assert any(word in text for word in COLOR_ZH[s.color])
        assert not any(ch.isascii() and ch.isalpha() for ch in text), text


def test_drawings_vary_beyond_one_template():
    # Same shape, colour and count: rotation, outline, stretch, texture and artefacts differ.
    rng = random.Random(9)
    images = [np.asarray(make_sample(rng, 64, shape="star", color="blue", count=1).image, dtype=np.int16)
              for _ in range(12)]
    differences = [np.abs(a - b).mean() for a, b in zip(images, images[1:])]
    assert min(differences) > 3.0, differences
