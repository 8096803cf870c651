"""Noise-word text augmentation (seed 000, A.3.3): a second caption with one word inserted that the
data set never uses, so one bucket's text varies without changing what it says.

The paper drew noise words from a DBpedia word list with the data set's own words removed; t2vkit
takes wordfreq's most frequent English words, likewise with every word of the data set's captions
removed. Stage 2 embeds a fixed number of augmented variants per caption once (so training never
calls the text encoder) and, at each step, uses a variant with probability ``noise_word_p``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

_WORD = re.compile(r"[a-z]+")


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def noise_dictionary(corpus: Iterable[str], size: int = 20000) -> list[str]:
    """wordfreq's ``size`` most frequent English words that are alphabetic, longer than one letter,
    and appear in none of the ``corpus`` captions."""
    from wordfreq import top_n_list

    banned = set().union(*(words(caption) for caption in corpus))
    return [w for w in top_n_list("en", size) if w.isalpha() and len(w) > 1 and w not in banned]


def insert_noise_word(caption: str, dictionary: list[str], rng: random.Random) -> str:
    """``caption`` with one dictionary word inserted at a random word boundary."""
    tokens = caption.split()
    tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(dictionary))
    return " ".join(tokens)


def variants(captions: Iterable[str], dictionary: list[str], per_caption: int, seed: int = 0) -> dict[str, list[str]]:
    """``per_caption`` augmented versions of each caption, the same for the same seed."""
    rng = random.Random(seed)
    return {c: [insert_noise_word(c, dictionary, rng) for _ in range(per_caption)] for c in sorted(set(captions))}
