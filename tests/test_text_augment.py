from __future__ import annotations

import random

from t2vkit.text_augment import insert_noise_word, noise_dictionary, variants, words


def test_the_dictionary_holds_no_word_of_the_data_sets_captions():
    captions = ["digit 3 is moving up and down", "digit 7 is moving left and right"]
    dictionary = noise_dictionary(captions, size=5000)
    assert len(dictionary) > 4000
    assert not set(dictionary) & words(" ".join(captions))
    assert {"is", "and", "up", "left"}.isdisjoint(dictionary) and "house" in dictionary


def test_one_noise_word_is_inserted_and_the_caption_is_kept():
    rng = random.Random(0)
    caption = "person 2 is walking left to right"
    for _ in range(20):
        noisy = insert_noise_word(caption, ["banana", "violin"], rng)
        tokens = noisy.split()
        assert len(tokens) == len(caption.split()) + 1
        extra = [t for t in tokens if t in ("banana", "violin")]
        assert len(extra) == 1 and [t for t in tokens if t not in extra] == caption.split()


def test_variants_are_deterministic_for_a_seed():
    dictionary = noise_dictionary(["a b"], size=2000)
    a = variants(["a red square", "a blue square"], dictionary, 4, seed=1)
    assert a == variants(["a blue square", "a red square"], dictionary, 4, seed=1)
    assert a != variants(["a red square", "a blue square"], dictionary, 4, seed=2)
    assert all(len(v) == 4 for v in a.values())
