"""Fit the reading stage's stacking models (`stack.json` beside a reader) with k-fold
figures, and measure accuracy against the number of windows read.

    python benchmarks/calibrate_reader.py                    # the shipped reader
    python benchmarks/calibrate_reader.py --reader DIR --set CORPUS=QUESTIONS.jsonl ...
    python benchmarks/calibrate_reader.py --windows 1,2,4,6 --limit 600 --dry-run

For every question the ranker's candidates are read (`qa.answering.reading.read`), once; the two
logistic models of `qa.answering.reading.Stack` are then fitted on those readings (sentence
labelled right when it holds a gold answer from an allowed source; the confidence model
on each question's best sentence) and the threshold is the plateau rule of
`qa.answering.calibration`, each set weighing the same (as the ranker's calibration does). The
default sets are squad-dev and the seeds set: squad-dev alone is 54% adversarial
unanswerable questions, and a threshold fitted on it alone abstains on most answerable
questions of ordinary articles. Held-out figures come from k folds of contiguous blocks
of each question file (SQuAD's files are ordered by article, so a fold holds whole
articles): each block is scored with models fitted on the other blocks and the other
sets. The final models, fitted on everything, are written to the reader folder unless
--dry-run; figures of a set the final models saw (the seeds gate of `make test`) are
in-sample, so report the held-out ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from qa.answering.calibration import fit_logistic, plateau_threshold
from qa.answering.reading import MAX_MARGIN, READER_FEATURES, STACK_FILE, Stack, read
from qa.evaluation.run import contains_answer, load_questions
from qa.reader.runtime import READER_DIR

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DEFAULT_SETS = [f"{SHARED / 'bench/squad-dev/corpus'}={SHARED / 'bench/squad-dev/questions.jsonl'}",
                f"{ROOT / 'seeds'}={ROOT / 'benchmarks/questions/seeds.jsonl'}"]

# per question: (answerable, the ranker's confidence, [(reader, ranker, span, null, label)]
# per sentence read: READER_FEATURES, then the window's no-answer logit and the label)
Rows = list[tuple[bool, float, list[tuple[float, float, float, float, int]]]]


def collect(corpus: Path, questions_file: Path, reader: Path, windows: int,
            limit: int | None, widen: int = 0) -> tuple[Rows, float]:
    """Readings of every question, and the mean reading time per question (ms)."""
    from qa.answering.calibration import confidence_of
    from qa.answering.ranker import score_candidates
    from qa.engine import Assistant
    from qa.settings import Settings

    settings = Settings.load(corpus=corpus, reader=str(reader), reader_windows=windows)
    assistant = Assistant.load(settings=settings)
    stage, index = assistant.reader, assistant.index
    from qa.answering import calibration

    ranker = calibration.load()
    questions = load_questions(questions_file)[:limit]
    rows: Rows = []
    spent = 0.0
    for n, q in enumerate(questions, 1):
        query = assistant.query(q.question)
        passages = index.search(query, assistant.search_settings, settings.top_k)
        cands = score_candidates(query, index, passages, ranker, settings.answer_passages)
        t0 = time.perf_counter()
        readings = read(stage.reader, query, index, cands, windows, widen) if cands else []
        spent += time.perf_counter() - t0
        rows.append((q.answerable, confidence_of(cands, ranker), [
            (r.reader, r.ranker, r.span, r.null,
             int(q.answerable and index.sentences[r.sentence].source in q.sources
                 and contains_answer(index.sentences[r.sentence].text, q.answers)))
            for r in readings]))
        if n % 200 == 0:
            print(f"  {n}/{len(questions)} questions", file=sys.stderr, flush=True)
    return rows, 1000 * spent / max(len(questions), 1)


def _best(stack_w: np.ndarray, readings, ranker_confidence: float):
    n = len(stack_w) - 1  # the stack's features: the first n of READER_FEATURES
    X = np.array([x[:n] for x in readings])
    z = X @ stack_w[:-1] + stack_w[-1]
    order = np.argsort(-z, kind="stable")
    b = int(order[0])
    margin = float(z[b] - z[order[1]]) if len(z) > 1 else MAX_MARGIN
    r, k, _, null, label = readings[b]
    return (np.array([z[b], min(margin, MAX_MARGIN), r, k, null, ranker_confidence]),
            bool(label))


def fit(sets: list[Rows], features: tuple[str, ...] = READER_FEATURES) -> Stack:
    """Both models and the threshold on all the given sets (each weighing the same); the
    sentence model over `features`, the first of READER_FEATURES."""
    k_feat = len(features)
    X, y, w = [], [], []
    for rows in sets:
        n = sum(len(rd) for _, _, rd in rows) or 1
        for _, _, readings in rows:
            for x in readings:
                X.append(x[:k_feat])
                y.append(x[-1])
                w.append(1.0 / n)
    ws = fit_logistic(np.array(X), np.array(y, dtype=float), np.array(w), standardize=True)
    C, cy, cw = [], [], []
    tops = []
    for rows in sets:
        n = sum(1 for _, _, rd in rows if rd) or 1
        per = []
        for answerable, rconf, readings in rows:
            if not readings:
                per.append((None, answerable, False))
                continue
            x, ok = _best(ws, readings, rconf)
            C.append(x)
            cy.append(float(answerable and ok))
            cw.append(1.0 / n)
            per.append((x, answerable, ok))
        tops.append(per)
    wc = fit_logistic(np.array(C), np.array(cy), np.array(cw), standardize=True)
    outcomes = [[(0.0 if x is None else float(1 / (1 + np.exp(-(x @ wc[:-1] + wc[-1])))), a, ok)
                 for x, a, ok in per] for per in tops]
    return Stack(tuple(round(float(v), 4) for v in ws[:-1]), round(float(ws[-1]), 4),
                 tuple(round(float(v), 4) for v in wc[:-1]), round(float(wc[-1]), 4),
                 plateau_threshold(outcomes), features=tuple(features))


def outcomes(stack: Stack, rows: Rows) -> list[tuple[float, bool, bool]]:
    """(confidence, answerable, best sentence right) per question under `stack`."""
    sw = np.array([*stack.weights, stack.bias])
    cw = np.array([*stack.confidence_weights, stack.confidence_bias])
    out = []
    for answerable, rconf, readings in rows:
        if not readings:
            out.append((0.0, answerable, False))
            continue
        x, ok = _best(sw, readings, rconf)
        out.append((float(1 / (1 + np.exp(-(x @ cw[:-1] + cw[-1])))), answerable, ok))
    return out


def kfold(rows: Rows, k: int, others: list[Rows] = (),
          features: tuple[str, ...] = READER_FEATURES) -> tuple[list, list[float]]:
    """Held-out outcomes of every question (models fitted on the other k-1 blocks and on
    the other sets, as the final fit sees them) and the thresholds each fold chose."""
    bounds = np.linspace(0, len(rows), k + 1).astype(int)
    held, thresholds = [], []
    for f in range(k):
        lo, hi = bounds[f], bounds[f + 1]
        stack = fit([rows[:lo] + rows[hi:], *others], features)
        thresholds.append(stack.threshold)
        held.extend((c, a, ok, stack.threshold) for c, a, ok in outcomes(stack, rows[lo:hi]))
    return held, thresholds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", default=str(READER_DIR), help="reader folder (default: shipped)")
    p.add_argument("--set", action="append", metavar="CORPUS=QUESTIONS")
    p.add_argument("--windows", default="4", help="windows read per question; a list "
                   "such as 1,2,4,6 measures each (the last is the one fitted and written)")
    p.add_argument("--widen", type=int, default=0, help="read N more sentences of the "
                   "document on each side of every window (a longer window; default 0: "
                   "the candidate and its neighbours, as the product reads)")
    p.add_argument("--stack-features", default=",".join(READER_FEATURES),
                   help="what orders the sentences read: the first two or all of "
                   f"{','.join(READER_FEATURES)} (reader,ranker: the stack before "
                   "2026-12-06)")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--limit", type=int, help="first N questions of each set")
    p.add_argument("--dry-run", action="store_true", help="report, don't write stack.json")
    p.add_argument("--out", help="also write the figures as JSON to this file")
    args = p.parse_args()
    features = tuple(args.stack_features.split(","))
    if features != READER_FEATURES[:len(features)] or len(features) < 2:
        p.error(f"--stack-features: the first two or all of {','.join(READER_FEATURES)}")
    specs = args.set or DEFAULT_SETS
    report: dict = {"reader": args.reader, "folds": args.folds, "curve": []}
    from qa.evaluation import machine

    report["machine"] = machine.describe()
    for windows in [int(x) for x in args.windows.split(",")]:
        sets, ms = [], []
        for spec in specs:
            corpus, _, questions = spec.partition("=")
            rows, t = collect(Path(corpus), Path(questions), Path(args.reader), windows,
                              args.limit, args.widen)
            sets.append(rows)
            ms.append(t)
        point = {"windows": windows, "widen": args.widen,
                 "read_ms_per_question": round(float(np.mean(ms)), 1)}
        for i, (spec, rows) in enumerate(zip(specs, sets, strict=True)):
            held, ts = kfold(rows, args.folds, sets[:i] + sets[i + 1:], features)
            qfile = Path(spec.partition("=")[2])
            name = qfile.parent.name if qfile.stem == "questions" else qfile.stem
            point[name] = {"held_out": _held_figures(held), "fold_thresholds": ts,
                           "auroc": _aurocs(rows, held)}
            report.setdefault("held_out_rows", {})[name] = [
                [round(c, 5), a, ok, t] for c, a, ok, t in held]  # of the last windows value
        print(json.dumps(point), flush=True)
        report["curve"].append(point)
    stack = fit(sets, features)
    stack = dataclasses.replace(stack, meta={
        "fitted_on": [s.split("=")[1].replace(str(ROOT.parent), "..") for s in specs],
        "windows": windows, "fitted_at": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/calibrate_reader.py " + " ".join(sys.argv[1:])})
    report["stack"] = stack.to_json()
    print(json.dumps(stack.to_json(), indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if not args.dry_run:
        target = Path(args.reader) / STACK_FILE
        target.write_text(json.dumps(stack.to_json(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    return 0


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve (the Mann-Whitney U statistic over the positives and
    negatives, ties counting half): the chance that a random positive scores above a
    random negative. None without both."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    order = sorted(neg)
    import bisect

    wins = sum(bisect.bisect_left(order, p) + 0.5 * (bisect.bisect_right(order, p)
                                                      - bisect.bisect_left(order, p))
               for p in pos)
    return round(wins / (len(pos) * len(neg)), 4)


def _aurocs(rows: Rows, held) -> dict:
    """How well each confidence tells a right answer (answerable, best sentence right)
    from everything else: the reading stage's held-out confidence, and the ranker's own."""
    right = [bool(a and ok) for _, a, ok, _ in held]
    return {"reader": auroc([c for c, *_ in held], right),
            "ranker": auroc([rconf for _, rconf, _ in rows], right)}


def _held_figures(held) -> dict:
    """Figures of held-out outcomes, each at its own fold's threshold."""
    a = [h for h in held if h[1]]
    u = [h for h in held if not h[1]]

    def share(rows, pred) -> float:
        return round(sum(1 for h in rows if pred(*h)) / max(len(rows), 1), 4)

    return {"accuracy_at_1": share(a, lambda c, _, ok, t: ok and c >= t),
            "abstain_unanswerable": share(u, lambda c, _, ok, t: c < t),
            "false_abstention": share(a, lambda c, _, ok, t: c < t),
            "top_right": share(a, lambda c, _, ok, t: ok),
            "accuracy": share(held, lambda c, ans, ok, t: (ans and ok and c >= t)
                              or (not ans and c < t))}


if __name__ == "__main__":
    sys.exit(main())
