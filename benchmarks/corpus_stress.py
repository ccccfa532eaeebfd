"""Odd-sized corpora: many tiny files, or one huge article; checks every offset afterwards.

    python benchmarks/corpus_stress.py tiny --files 10000      # 10,000 one-sentence files
    python benchmarks/corpus_stress.py huge --mb 50            # one 50 MB article (long!)

Builds a corpus in a temporary folder, indexes it with `qa index` (wall time and peak
memory from /usr/bin/time when present), asks a few questions, and verifies that every
stored sentence and chunk is exactly `file_text[start:end]`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import add_data_argument  # noqa: E402

PLACES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Perth", "Tbilisi", "Lima", "Riga"]
THINGS = ["bridge", "museum", "harbour", "library", "stadium", "tramway", "market", "park"]


def tiny_corpus(folder: Path, files: int) -> list[str]:
    rng = random.Random(1)
    for i in range(files):
        place, thing = rng.choice(PLACES), rng.choice(THINGS)
        sub = folder / f"d{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"note-{i:05d}.txt").write_text(
            f"The {thing} in {place} number {i} reopened after {rng.randint(2, 40)} weeks "
            "of repairs.\n", encoding="utf-8")
    return [f"When did the {THINGS[0]} in {PLACES[0]} reopen?", "Which tramway reopened?"]


def huge_corpus(folder: Path, mb: int) -> list[str]:
    rng = random.Random(2)
    folder.mkdir(parents=True, exist_ok=True)
    target = mb * 1024 * 1024
    with open(folder / "huge.txt", "w", encoding="utf-8") as f:
        size = 0
        n = 0
        while size < target:
            line = (f"Paragraph {n}: the {rng.choice(THINGS)} in {rng.choice(PLACES)} "
                    f"recorded {rng.randint(1, 9999)} visitors on day {n}. "
                    "Officials said numbers would be published monthly.\n\n")
            f.write(line)
            size += len(line.encode())
            n += 1
    return ["How many visitors did the museum in Oslo record on day 12?"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["tiny", "huge"])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=50)
    add_data_argument(parser, used=False)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus, index = Path(tmp) / "corpus", Path(tmp) / "index"
        questions = (tiny_corpus(corpus, args.files) if args.kind == "tiny"
                     else huge_corpus(corpus, args.mb))
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "qa.cli", "index", "--corpus",
                               str(corpus), "--index", str(index), "--quiet"],
                              capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - began
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        from embeddings import store
        from qa.engine import Assistant
        from qa.settings import Settings

        data, _, _ = store.load_index(index)
        texts: dict[str, str] = {}

        def text(source: str) -> str:
            if source not in texts:
                texts[source] = (corpus / source).read_bytes().decode("utf-8")
            return texts[source]

        bad = sum(1 for s in data.sentences if text(s.source)[s.start:s.end] != s.text)
        bad += sum(1 for c in data.chunks if text(c.source)[c.start:c.end] != c.text)
        assistant = Assistant.load(settings=Settings.load(corpus=corpus, index=index))
        asked = []
        for q in questions:
            a = assistant.ask(q, abstain=False)
            ok = all(text(c.source)[c.start:c.end] == c.quote for c in a.citations)
            asked.append({"question": q, "answer": a.answer[:120], "verbatim": ok})
        row = {"kind": args.kind, "files": len(data.documents), "chunks": len(data.chunks),
               "sentences": len(data.sentences), "index_seconds": round(seconds, 1),
               "index_peak_rss_mb": round(peak_mb, 1), "offset_mismatches": bad,
               "answers": asked, "summary": proc.stdout.strip()}
        print(json.dumps({"corpus_stress": row}, ensure_ascii=False))
        return 0 if bad == 0 and all(a["verbatim"] for a in asked) else 1


if __name__ == "__main__":
    sys.exit(main())
