"""The windows of one training run of the reader (`qa.training.loop`): the records' own
windows with generated unanswerable questions (`qa.training.data`, fresh for every epoch,
each epoch built in its own process when `workers` > 1), the windows of the product's
retrieval (`qa reader windows`, the same every epoch), and the held-out ones."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from qa.reader.runtime import Pieces
from qa.training.data import Example, Record, build_examples, dev_split


def run_windows(cfg, pieces: Pieces, records: Sequence[Record]):
    """(training windows per epoch, held-out windows, held-out retrieved windows)."""
    from qa.training.data import pool_examples, read_pool

    train_recs, dev_recs = dev_split(records, cfg.dev_fraction, cfg.seed)
    rows = read_pool(cfg.windows) if cfg.windows else []
    for row in rows[:1] + rows[-1:]:  # files written before rows carried it: 13, 0.02
        made = (row.get("split_seed", 13), row.get("dev_fraction", 0.02))
        if made != (cfg.seed, cfg.dev_fraction):
            raise ValueError(f"the --windows were split into train and dev with seed "
                             f"{made[0]} and fraction {made[1]}, this run with {cfg.seed} "
                             f"and {cfg.dev_fraction}: held-out questions would be trained "
                             "on; give qa reader windows the same --seed, or train with it")
    pieces.many([r.question for r in records] + [r["question"] for r in rows])
    pool_train = pool_examples(rows, pieces, "train")
    pool_dev = pool_examples(rows, pieces, "dev")
    n_epochs = max(1, math.ceil(cfg.epochs))
    # fresh windows (other negatives, other window sizes) for every epoch
    seeds = [cfg.seed + 100 * e for e in range(n_epochs)]
    if cfg.workers > 1 and n_epochs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        global _JOB
        _JOB = (train_recs, pieces, cfg.generated)  # inherited by the forked workers
        try:
            with ProcessPoolExecutor(min(cfg.workers, n_epochs),
                                     mp_context=multiprocessing.get_context("fork")) as pool:
                built = list(pool.map(_epoch_windows, seeds))
        finally:
            _JOB = None
    else:
        built = [build_examples(train_recs, pieces, s, cfg.progress, cfg.generated)
                 for s in seeds]
    per_epoch = [part + pool_train for part in built]
    dev = build_examples(dev_recs, pieces, cfg.seed + 1)  # comparable across --generated
    return train_recs, dev_recs, per_epoch, dev, pool_dev


_JOB = None


def _epoch_windows(seed: int) -> list[Example]:
    records, pieces, generated = _JOB
    return build_examples(records, pieces, seed, False, generated)


def window_counts(examples: Sequence[Example]) -> dict:
    """Windows by kind, with `unanswerable` (windows of unanswerable questions:
    crowd-written, generated, or retrieved for an unanswerable record) and `retrieved`
    (windows the product's retrieval chose) summed over the kinds."""
    kinds = Counter(e.kind for e in examples)
    # the two kinds whose names the sums take keep their counts under other names, so
    # that every kind is still there beside the sums
    rename = {"unanswerable": "unanswerable-records", "retrieved": "retrieved-answerable"}
    out = dict(sorted((rename.get(k, k), n) for k, n in kinds.items()))
    out["unanswerable"] = sum(n for k, n in kinds.items() if k == "unanswerable"
                              or k.startswith("generated-") or k == "retrieved-unanswerable")
    out["retrieved"] = sum(n for k, n in kinds.items() if k.startswith("retrieved"))
    return out
