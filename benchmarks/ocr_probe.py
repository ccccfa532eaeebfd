"""Would OCR of scanned PDFs be cheap here? Debian's tesseract on simulated scans.

    apt-get install tesseract-ocr      # Debian's tesseract 5 and its English model
    python benchmarks/ocr_probe.py [--pages N] [--dpi D]

Each seeds article is drawn as page images (DejaVu Sans 10 pt on A4 at --dpi, as a
scanner would give them, no noise), tesseract reads them back, and the script reports
seconds a page and how much of the article's word sequence comes back in order (difflib
ratio over words). The numbers decided that the product skips scans with a warning
instead of running OCR (docs/formats.md).
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed_common import emit  # noqa: E402


def pages_of(text: str, dpi: int, lines_per_page: int = 48):
    """A4 page images of `text`, wrapped like tests/made_files.text_pdf."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"),
                              size=round(10 / 72 * dpi))
    rows = []
    for paragraph in text.split("\n"):
        if paragraph.strip():
            rows += textwrap.wrap(" ".join(paragraph.split()), 85) + [""]
    size = (round(8.27 * dpi), round(11.69 * dpi))
    step = round(15 / 72 * dpi)
    for k in range(0, len(rows), lines_per_page):
        page = Image.new("L", size, 255)
        draw = ImageDraw.Draw(page)
        for i, row in enumerate(rows[k:k + lines_per_page]):
            draw.text((round(50 / 72 * dpi), round(60 / 72 * dpi) + i * step), row, fill=0,
                      font=font)
        yield page


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=6, help="at most N pages in all")
    p.add_argument("--dpi", type=int, default=300)
    args = p.parse_args()
    if shutil.which("tesseract") is None:
        print("tesseract is not installed (apt-get install tesseract-ocr)")
        return 2
    version = subprocess.run(["tesseract", "--version"], capture_output=True,
                             text=True).stdout.split("\n")[0]
    seconds, done, ratios = 0.0, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "seeds").glob("*.txt")):
            text = "".join(c for c in path.read_text("utf-8") if ord(c) < 0x3000)
            got = []
            for page in pages_of(text, args.dpi):
                if done >= args.pages:
                    break
                image = Path(tmp) / "page.png"
                page.save(image)
                t0 = time.perf_counter()
                out = subprocess.run(["tesseract", str(image), "stdout", "-l", "eng"],
                                     capture_output=True, text=True, check=True).stdout
                seconds += time.perf_counter() - t0
                got.append(out)
                done += 1
            if got:
                # compare with the part of the article those pages hold
                words = text.split()
                read = " ".join(got).split()
                ratios.append(difflib.SequenceMatcher(a=words[:len(read)], b=read,
                                                      autojunk=False).ratio())
            if done >= args.pages:
                break
    result = {"tesseract": version, "dpi": args.dpi, "pages": done,
              "seconds_per_page": round(seconds / max(done, 1), 2),
              "word_order_min": round(min(ratios), 4) if ratios else None}
    print(result)
    emit("ocr_probe", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
