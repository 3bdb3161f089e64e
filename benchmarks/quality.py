"""Quality-gate benchmark: near-duplicate removal, decontamination and the PHI scan at scale.

Builds N synthetic rows of realistic length (input 1-3 sentences; output 2-10; context empty for 85%
of rows, 6-12 sentences for the rest: about 1,100 characters a row) and M synthetic benchmark items,
with planted work for each stage: 3% of rows are near-duplicates of another row (one word changed),
0.2% copy a benchmark question into their input, 0.5% carry a PHI sentence (e-mail, phone, MRN,
name after a title), and 1% name a doctor ("Dr. ..."), digits are everywhere (ages, doses, lab
values). The data is written once to Parquet; each stage then runs in its own process, which reads
the rows and runs the stage, so its peak RSS (input frame included) is its own.

Prints, per stage: rows/s on the wall clock and on the process's CPU time (on a shared machine CPU
time is the steadier figure; with two busy threads it can exceed the wall-clock time), what the stage
removed or found, and peak RSS (VmHWM).
Targets on 2 cores: near-dup >= 50,000 rows/s, decontamination >= 100,000 rows/s, PHI >= 20,000
rows/s, peak RSS <= 4 GB.

    .venv/bin/python benchmarks/quality.py [--rows 1000000] [--items 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYLLABLES = ["ca", "ro", "ti", "na", "me", "lo", "der", "pha", "gen", "sto", "cy", "mus", "ple", "tho", "ven", "al", "ur", "ic",
             "os", "mi", "tra", "bel", "quin", "zo", "hy", "per", "neu", "ost", "car", "dio"]
FUNCTION_WORDS = ["the", "of", "and", "with", "in", "a", "to", "for", "is", "was", "on", "after", "by", "at", "or", "as"]
TARGETS = {"near_duplicates": 50_000, "decontamination": 100_000, "phi": 20_000}
RSS_TARGET_GB = 4.0


def vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    parts = rng.integers(0, len(SYLLABLES), (size, 4))
    lengths = rng.integers(2, 5, size)
    words = {"".join(SYLLABLES[p] for p in row[:n]) for row, n in zip(parts, lengths)}
    return np.array(sorted(words))


def sentences(count: int, words: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Sentences of 10-28 words: Zipf-distributed content words, function words, some numbers."""
    out = []
    zipf = rng.zipf(1.25, (count, 28)) % len(words)
    for i in range(count):
        n = int(rng.integers(10, 29))
        tokens = [FUNCTION_WORDS[j % len(FUNCTION_WORDS)] if j % 3 == 1 else str(words[zipf[i, j]]) for j in range(n)]
        if i % 4 == 0:
            tokens.insert(int(rng.integers(0, n)), f"{int(rng.integers(1, 999))} mg")
        out.append(" ".join(tokens).capitalize() + ".")
    return out


def build(rows: int, items: int, folder: Path, seed: int = 0) -> None:
    """Write `rows.parquet` (row_id, source, input, context, output) and `items.parquet` (benchmark items)."""
    from medset_dagster.sources.registry import benchmark_sources, dataset_sources

    rng = np.random.default_rng(seed)
    words = vocabulary(6000, rng)
    pool = pl.Series(sentences(60_000, words, rng))
    bench_pool = pl.Series(sentences(40_000, words[::-1], np.random.default_rng(seed + 1)))

    def joined(pool: pl.Series, count: np.ndarray) -> pl.Series:
        picks = rng.integers(0, len(pool), int(count.sum()))
        flat = pool.gather(picks)
        return pl.DataFrame({"g": np.repeat(np.arange(len(count)), count), "s": flat}).group_by("g", maintain_order=True).agg(
            pl.col("s").str.join(" ")
        )["s"]

    sources = np.array(sorted(s.source_id for s in dataset_sources()))
    source = sources[rng.integers(0, len(sources), rows)]
    inputs = joined(pool, rng.integers(1, 4, rows))
    outputs = joined(pool, rng.integers(2, 11, rows))
    has_context = rng.random(rows) < 0.15
    contexts = joined(pool, np.where(has_context, rng.integers(6, 13, rows), 1))
    frame = pl.DataFrame({
        "row_id": pl.int_range(rows, eager=True).cast(pl.String).str.zfill(8),
        "source": source,
        "input": inputs,
        "context": pl.Series(contexts).zip_with(pl.Series(has_context), pl.Series([""] * rows)),
        "output": outputs,
    })
    benchmarks = [spec.source_id for spec in benchmark_sources()]
    item_frame = pl.DataFrame({
        "benchmark": np.array(benchmarks)[rng.integers(0, len(benchmarks), items)],
        "item_id": [f"item-{i:06d}" for i in range(items)],
        "question": joined(bench_pool, rng.integers(2, 5, items)),
        "options": [[f"option {k} of item {i}" for k in "ABCD"] for i in range(items)],
        "answer": [f"option A of item {i}" for i in range(items)],
    })
    # Planted work: near-duplicates (one word changed), contamination, PHI, doctors' names.
    index = np.arange(rows)
    near = rng.choice(index, int(rows * 0.03), replace=False)
    originals = rng.integers(0, rows, near.size)
    copied = frame[originals.tolist()].select(
        pl.col("input").str.replace(r"\b(\w+)\b", "changed", literal=False), "context", "output"
    )
    contaminated = rng.choice(index, int(rows * 0.002), replace=False)
    questions = item_frame["question"].gather(rng.integers(0, items, contaminated.size))
    phi = rng.choice(index, int(rows * 0.005), replace=False)
    phi_text = pl.Series([
        ["Contact jane.doe@example.org for the scan.", "Call her on (212) 555-0187 tonight.", "MRN: 4821937 on the wristband.",
         "Mr. John Smith was seen in clinic."][i % 4] for i in range(phi.size)])
    doctors = rng.choice(index, int(rows * 0.01), replace=False)
    updates = (
        pl.DataFrame({"i": near, "input": copied["input"], "context": copied["context"], "output": copied["output"]})
    )
    frame = frame.with_row_index("i").update(updates.with_columns(pl.col("i").cast(pl.UInt32)), on="i")
    contaminated_inputs = pl.DataFrame({"i": pl.Series(contaminated).cast(pl.UInt32), "q": questions})
    frame = frame.join(contaminated_inputs, on="i", how="left").with_columns(
        pl.when(pl.col("q").is_not_null()).then(pl.concat_str([pl.col("input"), pl.col("q")], separator=" ")).otherwise(pl.col("input")).alias("input")
    ).drop("q")
    phi_frame = pl.DataFrame({"i": pl.Series(phi).cast(pl.UInt32), "p": phi_text})
    doc_frame = pl.DataFrame({"i": pl.Series(doctors).cast(pl.UInt32), "d": pl.Series(["Dr. Okafor reviewed the results."] * doctors.size)})
    frame = (
        frame.join(phi_frame, on="i", how="left").join(doc_frame, on="i", how="left")
        .with_columns(pl.concat_str([pl.col("output"), pl.col("p"), pl.col("d")], separator=" ", ignore_nulls=True).alias("output"))
        .drop("p", "d", "i")
    )
    frame.write_parquet(folder / "rows.parquet")
    item_frame.write_parquet(folder / "items.parquet")


def _stage(name: str, folder: str, queue: mp.Queue) -> None:
    rows = pl.read_parquet(Path(folder) / "rows.parquet")
    items = pl.read_parquet(Path(folder) / "items.parquet")
    extra: dict = {}
    if name == "phi":
        from medset_dagster.dataset.phi import PhiConfig, _detectors

        _detectors(PhiConfig().phone_regions)  # Presidio's import and set-up (~3 s) is not per-row work
    wall, cpu = time.perf_counter(), time.process_time()
    if name == "near_duplicates":
        from medset_dagster.dataset.near_duplicates import remove_near_duplicates

        kept, removed, stats = remove_near_duplicates(rows)
        extra = {"removed": stats["removed"], "clusters": stats["clusters"], "candidates": stats["candidates"]}
    elif name == "decontamination":
        from medset_dagster.dataset.decontamination import build_index, decontaminate

        started = time.perf_counter()
        index = build_index(items)
        extra["index_s"] = round(time.perf_counter() - started, 2)
        kept, removed, stats = decontaminate(rows, index)
        extra |= {"removed": stats["removed"], "index_ngrams": int(index.hashes.size)}
    else:
        from medset_dagster.dataset.phi import scan_and_apply

        kept, findings, stats = scan_and_apply(rows)
        extra = {"rows_with_findings": stats["rows_with_findings"], "findings": stats["findings"]}
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    queue.put({"stage": name, "rows": rows.height, "wall_s": wall, "cpu_s": cpu, "rss_gb": peak_rss_gb(), **extra})


def peak_rss_gb() -> float:
    """This process's peak RSS (VmHWM). Not `ru_maxrss`: Linux carries the parent's peak at fork
    time into an exec'd child's `ru_maxrss`, so a child spawned by a big parent would report it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _build(rows: int, items: int, folder: str) -> None:
    build(rows, items, Path(folder))


def run_stage(name: str, folder: Path) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_stage, args=(name, str(folder), queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--stages", default="near_duplicates,decontamination,phi")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        builder = mp.get_context("spawn").Process(target=_build, args=(args.rows, args.items, str(folder)))
        builder.start()  # in its own process, so this parent stays small
        builder.join()
        size = pl.read_parquet(folder / "rows.parquet").select(
            (pl.col("input").str.len_chars() + pl.col("context").str.len_chars() + pl.col("output").str.len_chars()).mean()
        ).item()
        print(f"data: {args.rows:,} rows ({size:,.0f} characters a row on average), {args.items:,} benchmark items, "
              f"made in {time.perf_counter() - started:.1f} s")
        failed = False
        for name in args.stages.split(","):
            r = run_stage(name, folder)
            wall_rate, cpu_rate = r["rows"] / r["wall_s"], r["rows"] / r["cpu_s"]
            ok = wall_rate >= TARGETS[name] and r["rss_gb"] <= RSS_TARGET_GB
            failed |= not ok
            details = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in r.items()
                                if k not in ("stage", "rows", "wall_s", "cpu_s", "rss_gb"))
            print(f"{name:16s} {wall_rate:>10,.0f} rows/s wall ({r['wall_s']:.1f} s)  {cpu_rate:>10,.0f} rows/s CPU  "
                  f"peak RSS {r['rss_gb']:.2f} GB  target {TARGETS[name]:,} rows/s, {RSS_TARGET_GB:.0f} GB: "
                  f"{'met' if ok else 'MISSED'}  [{details}]")
        if failed:
            print("at least one target missed (see above)")


if __name__ == "__main__":
    main()
