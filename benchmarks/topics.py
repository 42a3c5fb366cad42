"""Topics of financial headlines: the tagger of the ``finance`` domain measured on a
sample annotated by hand (``benchmarks/annotations/headline_topics.tsv``, ids only).

    .venv/bin/python benchmarks/topics.py            # section finance-topics of RESULTS.md
    .venv/bin/python benchmarks/topics.py --draw     # the sample's ids, split and text (to annotate; never commit the texts)

The sample is drawn from ``../shared/data/financial-headlines`` with a fixed seed,
stratified by source and year (``draw_sample``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timezone

from temporec.data.headlines import Headline

SAMPLE_SIZE, SAMPLE_SEED = 400, 18


def stratum(headline: Headline) -> tuple[str, int]:
    return headline.source, datetime.fromtimestamp(headline.timestamp, timezone.utc).year


def draw_sample(
    headlines: list[Headline], size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED
) -> list[tuple[Headline, str]]:
    """``size`` headlines and their split (``dev`` or ``test``): each (source, year) stratum
    gets its share of the stream (largest remainders round it), drawn at random within;
    the draws, stratum by stratum, go to dev and test in turn, so both halves are stratified."""
    groups: dict[tuple[str, int], list[Headline]] = defaultdict(list)
    for headline in headlines:
        groups[stratum(headline)].append(headline)
    quotas = {key: size * len(group) / len(headlines) for key, group in groups.items()}
    counts = {key: int(quota) for key, quota in quotas.items()}
    by_remainder = sorted(quotas, key=lambda key: (counts[key] - quotas[key], key))
    for key in by_remainder[: size - sum(counts.values())]:
        counts[key] += 1
    generator = random.Random(seed)
    drawn = [h for key in sorted(groups) for h in generator.sample(groups[key], counts[key])]
    return [(headline, ("dev", "test")[i % 2]) for i, headline in enumerate(drawn)]
