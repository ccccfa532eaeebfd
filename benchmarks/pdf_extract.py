"""PDF text extraction: pypdf against pdfminer.six (raw and as embeddings/pdf.py uses it)
on the test files, and the speed and build time of the bbc-news corpus as PDFs.

    python benchmarks/pdf_extract.py [--data DIR] [--bbc N] [--skip-build]

Quality, on files whose text is known (tests/made_files.py writes them):
- the seeds, each article rendered as a PDF (wrapped lines, several pages): how much of
  the article's word sequence the extracted text keeps in order (difflib ratio over
  words, 1.0 = all, in order; CJK characters aside, the test font has none) and how many
  sentences of the .txt index come out whole (the 4 with CJK characters cannot);
- the harbour report (tests/embeddings/test_pdf.py): running header and page numbers left out,
  the two columns (drawn line by line across the page) read one after the other, the
  table's rows kept, the paragraph running on across the page break kept whole.
Speed: pages a second of each extractor over the seeds and bbc-news PDFs, and the time
`qa index` takes to build an index of bbc-news as PDFs against the same articles as .txt
(same machine, same run). bbc-news needs --data (docs/data.md); without it the seeds part
runs alone.
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))  # made_files: the PDF writer the tests use

from speed_common import add_data_argument, emit, table  # noqa: E402

import made_files as made  # noqa: E402


def pypdf_text(data: bytes) -> tuple[str, int]:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(p.extract_text() or "" for p in reader.pages), len(reader.pages)


def pdfminer_text(data: bytes) -> tuple[str, int]:
    from pdfminer.high_level import extract_text
    from pdfminer.pdfpage import PDFPage

    return extract_text(io.BytesIO(data)), sum(1 for _ in PDFPage.get_pages(io.BytesIO(data)))


def ours_text(data: bytes) -> tuple[str, int]:
    from embeddings import pdf

    out = pdf.extract(data)
    return out.text, len(out.pages)


EXTRACTORS = {"pypdf": pypdf_text, "pdfminer.six": pdfminer_text,
              "embeddings/pdf.py (pdfminer.six)": ours_text}


def words(text: str) -> list[str]:
    # a word hyphenated at a line end is one word, as the index reads it
    return re.sub(r"(?<=\w)-\s*\n\s*(?=[a-z])", "", text).split()


def order_ratio(truth: str, got: str) -> float:
    return difflib.SequenceMatcher(a=words(truth), b=words(got), autojunk=False).ratio()


def seeds_truth() -> dict[str, tuple[str, list[str]]]:
    """name -> (the .txt file's text without its CJK characters, which the test font
    lacks; the sentences the product's reader finds in it)."""
    from embeddings.chunking import sentences_of, token_counter
    from embeddings.documents import read_document

    count = token_counter()
    out = {}
    for path in sorted((ROOT / "seeds").glob("*.txt")):
        doc = read_document(path, path.name)
        out[path.stem] = (re.sub(r"[\u3400-\u9fff]", "", doc.text),
                          [" ".join(s.text.split()) for s in sentences_of(doc, 256, count)])
    return out


def harbour_checks(text: str) -> dict:
    flat = " ".join(text.split())
    left, right = " ".join(made.LEFT), " ".join(made.RIGHT)
    run_on = " ".join(made.PAGE1_RUN_ON + made.PAGE2_RUN_ON)
    rows = [" ".join(r) for r in made.TABLE]
    return {
        "header_left_out": made.HEADER not in text,
        "page_numbers_left_out": not any(ln.strip() in {"1", "2", "3", "4"}
                                         for ln in text.split("\n")),
        "columns_in_order": left in flat and right in flat,
        "run_on_kept": run_on in flat,
        "table_rows_kept": all(" ".join(r.replace("|", " ").split()) in
                               " ".join(flat.replace("|", " ").split()) for r in rows),
    }


def quality() -> list[dict]:
    truth = seeds_truth()
    pdfs = {name: made.text_pdf((ROOT / "seeds" / f"{name}.txt").read_text("utf-8"))
            for name in truth}
    report = made.harbour_report()
    rows = []
    for label, fn in EXTRACTORS.items():
        ratios, whole, total, pages, seconds = [], 0, 0, 0, 0.0
        for name, data in pdfs.items():
            t0 = time.perf_counter()
            text, n = fn(data)
            seconds += time.perf_counter() - t0
            pages += n
            content, sentences = truth[name]
            ratios.append(order_ratio(content, text))
            flat = " ".join(text.split())
            whole += sum(s in flat for s in sentences)
            total += len(sentences)
        checks = harbour_checks(fn(report)[0])
        rows.append({"extractor": label, "seeds_word_order": round(min(ratios), 4),
                     "seeds_sentences_whole": f"{whole}/{total}",
                     "seeds_pages_per_s": round(pages / seconds, 1),
                     "harbour_checks": f"{sum(checks.values())}/{len(checks)}",
                     **{k: v for k, v in checks.items()}})
    return rows


def bbc_build(bbc: Path, limit: int | None) -> dict:
    """Render bbc-news as PDFs, time extraction of every PDF with each extractor, and
    time `qa index` on the PDFs and on the same articles as .txt (fresh index folders)."""
    articles = sorted(bbc.rglob("*.txt"))[:limit]  # one folder per topic
    work = Path(tempfile.mkdtemp(prefix="pdf-bench-"))
    try:
        pdf_dir, txt_dir = work / "pdf", work / "txt"
        pdf_dir.mkdir()
        txt_dir.mkdir()
        t0 = time.perf_counter()
        for path in articles:
            name = f"{path.parent.name}-{path.stem}"
            text = path.read_text("utf-8", errors="replace")
            (pdf_dir / f"{name}.pdf").write_bytes(made.text_pdf(text))
            shutil.copy(path, txt_dir / f"{name}.txt")
        render_s = time.perf_counter() - t0
        speeds = {}
        for label in ("pypdf", "embeddings/pdf.py (pdfminer.six)"):
            fn = EXTRACTORS[label]
            pages, t0 = 0, time.perf_counter()
            for path in sorted(pdf_dir.iterdir()):
                pages += fn(path.read_bytes())[1]
            speeds[label] = {"pages": pages, "seconds": round(time.perf_counter() - t0, 1),
                             "pages_per_s": round(pages / (time.perf_counter() - t0), 1)}
        builds = {}
        for kind, folder in (("txt", txt_dir), ("pdf", pdf_dir)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "qa.cli", "index", "--corpus", str(folder),
                            "--index", str(work / f"index-{kind}")], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            builds[kind] = round(time.perf_counter() - t0, 1)
        return {"articles": len(articles), "render_s": round(render_s, 1),
                "extraction": speeds, "build_s": builds,
                "build_ratio_pdf_over_txt": round(builds["pdf"] / builds["txt"], 3)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(p)
    p.add_argument("--bbc", type=int, metavar="N", help="only the first N bbc-news articles")
    p.add_argument("--skip-build", action="store_true", help="the seeds part only")
    args = p.parse_args()
    rows = quality()
    print(table(rows, [("extractor", "extractor"), ("seeds_word_order", "seeds word order (min)"),
                       ("seeds_sentences_whole", "seeds sentences whole"),
                       ("seeds_pages_per_s", "pages/s"),
                       ("harbour_checks", "harbour checks")], left=("extractor",)))
    payload: dict = {"quality": rows}
    if not args.skip_build:
        skip = args.data.skip_line("bbc-news")
        if skip:
            print(skip)
        else:
            payload["bbc_news"] = bbc_build(args.data.bbc, args.bbc)
            print(payload["bbc_news"])
    emit("pdf_extract", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
