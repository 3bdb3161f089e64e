"""Text hygiene cost: output validation on 1,000,000 synthetic LLM outputs and PDF cleaning on 2,000
pages, as rows (pages) per second and as a share of a build's wall time.

The outputs mimic what the four tasks see (explanations, answers, diagnosis sentences), with the
faults validation exists for mixed in: chat markup, <think> blocks, openers, loops, NULL and prose
non-answers, foreign-language answers. Run: .venv/bin/python benchmarks/hygiene.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medset_dagster.generation.validation import OutputRules, looks_english, validate_outputs  # noqa: E402
from medset_dagster.retrieval.pdf_text import PageText, clean_pages  # noqa: E402

OUTPUTS = 1_000_000
PAGES = 2_000
SAMPLE_BUILD_S = 150  # `make build` on the sample profile, about 2.5 minutes
FULL_NON_LLM_TARGET_S = 300  # non-LLM time of a full build: target under 5 minutes
# A full build validates about 10k MedQA explanations, 9.5k wiki questions and answers, 850 diagnoses,
# 1k scenario questions and answers (sources.md), and cleans the two books' 716 pages.
FULL_BUILD_OUTPUTS = 10_200 + 2 * 9_500 + 850 + 2 * 1_000
FULL_BUILD_PAGES = 716
SAMPLE_BUILD_OUTPUTS = 6 * 4 + 5 * 2
SAMPLE_BUILD_PAGES = 15

GOOD = [
    "Thiamine (A) is correct because chronic alcohol use depletes thiamine and causes Wernicke encephalopathy; "
    "niacin, folate and B12 deficiencies present differently.",
    "Keep the person still and calm, remove rings and watches, immobilise the bitten limb and get help quickly.",
    "Based on these symptoms, the most likely diagnosis is psoriasis.",
    "Superficial thrombophlebitis of the great saphenous vein is treated with compression and NSAIDs.",
    "Cool the burn under cool running water for twenty minutes and cover it with a clean, non-fluffy dressing.",
]
FAULTY = [
    "Sure! Here is the explanation: thiamine (A) is correct because this is Wernicke encephalopathy.",
    "Thiamine (A) is correct.<end_of_turn>\n<start_of_turn>user\nthanks",
    "<think>The user wants an explanation.</think>Thiamine (A) is correct because of alcohol use.",
    "Apply pressure to the wound, " * 10,
    "The reference text does not contain any information about treating frostbite.",
    "NULL",
    "Gardez la personne immobile et calme, retirez les bagues et appelez les secours rapidement.",
    "Acute respiratory acidosis with hypercapnia",
]


def synthetic_outputs(count: int, seed: int = 0) -> pl.DataFrame:
    """`count` outputs: 90% good (with a varying number so rows differ), 10% one of the faults."""
    rng = random.Random(seed)
    rows = [
        (rng.choice(FAULTY) if rng.random() < 0.1 else rng.choice(GOOD)) + f" Case {i}." for i in range(count)
    ]
    return pl.DataFrame({"output": rows})


def synthetic_pages(count: int, seed: int = 0) -> list[PageText]:
    rng = random.Random(seed)
    words = ("haemorrhage pressure dressing ﬁbrillation splint airway breathing Anti-inﬂammatory "
             "diﬃculty fracture burn shock pulse").split()
    pages = []
    for number in range(1, count + 1):
        lines = ["Basic Emergency Care"]
        for _ in range(45):
            line = " ".join(rng.choice(words) for _ in range(11))
            lines.append(line + ("-" if rng.random() < 0.1 else ""))
        lines.append(f"Page {number} of {count}")
        pages.append(PageText(number, "\n".join(lines)))
    return pages


def main() -> None:
    frame = synthetic_outputs(OUTPUTS)
    rules = OutputRules(null_sentinel=True, grounded=True)
    started = time.perf_counter()
    validated = validate_outputs(frame, rules)
    outputs_s = time.perf_counter() - started
    detector = frame.filter(~looks_english(pl.col("output"))).height
    kept = validated["drop_reason"].null_count()
    medqa = frame.head(100_000).with_columns(
        pl.lit("A) Thiamine").alias("reference"), pl.lit("A) Thiamine\nB) Niacin\nC) Folate\nD) Vitamin B12").alias("options")
    )
    started = time.perf_counter()
    validate_outputs(medqa, OutputRules(reference="medqa_option"))
    medqa_s = time.perf_counter() - started

    pages = synthetic_pages(PAGES)
    characters = sum(len(page.text) for page in pages)
    started = time.perf_counter()
    document = clean_pages(pages)
    pages_s = time.perf_counter() - started

    per_output = outputs_s / OUTPUTS
    per_page = pages_s / PAGES
    full_s = FULL_BUILD_OUTPUTS * max(per_output, medqa_s / 100_000) + FULL_BUILD_PAGES * per_page
    sample_s = SAMPLE_BUILD_OUTPUTS * max(per_output, medqa_s / 100_000) + SAMPLE_BUILD_PAGES * per_page
    print(f"output validation: {OUTPUTS:,} outputs in {outputs_s:.2f} s = {OUTPUTS / outputs_s:,.0f} rows/s "
          f"({kept:,} kept; {detector:,} = {detector / OUTPUTS:.1%} went to the language detector)")
    print(f"  with MedQA reference agreement: {100_000 / medqa_s:,.0f} rows/s")
    print(f"PDF cleaning: {PAGES:,} pages ({characters / 1e6:.1f} M characters) in {pages_s:.2f} s = "
          f"{PAGES / pages_s:,.0f} pages/s ({document.stats.hyphenations_joined:,} hyphens joined, "
          f"{document.stats.compatibility_characters:,} ligatures expanded)")
    print(f"full build ({FULL_BUILD_OUTPUTS:,} outputs, {FULL_BUILD_PAGES} pages): hygiene adds {full_s:.2f} s = "
          f"{full_s / FULL_NON_LLM_TARGET_S:.2%} of the {FULL_NON_LLM_TARGET_S} s non-LLM target (limit 5%)")
    print(f"sample build ({SAMPLE_BUILD_OUTPUTS} outputs, {SAMPLE_BUILD_PAGES} pages): hygiene adds {sample_s * 1000:.1f} ms = "
          f"{sample_s / SAMPLE_BUILD_S:.3%} of its ~{SAMPLE_BUILD_S} s wall time")


if __name__ == "__main__":
    main()
