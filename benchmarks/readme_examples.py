"""Regenerate the README's example outputs from a real run on seeds/.

    python benchmarks/readme_examples.py            # print the blocks
    python benchmarks/readme_examples.py --write    # rewrite them in README.md

Each example in README.md follows a marker line:

    <!-- example: ask "QUESTION" -->       the `qa ask` output (a console block)
    <!-- example: api {JSON request} -->   the answer object of POST /api/answer (a json
                                           block; passages shortened to the first one)

and tests/test_readme.py checks that the README still shows what the code answers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE = re.compile(r"(<!-- example: (ask|api) (.+?) -->\n```(\w*)\n)(.*?)(```)", re.S)


def shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def api_view(answer: dict) -> dict:
    """The answer object as the README shows it: passages cut to the first, long texts
    shortened, timings left out (they differ from run to run)."""
    out = {k: v for k, v in answer.items() if k not in ("timings_ms", "passages")}
    out["citations"] = [{**c, "title": shorten(c["title"], 40), "quote": c["quote"]}
                        for c in answer["citations"][:1]]
    first = answer["passages"][0] if answer["passages"] else None
    out["passages"] = [{**first, "text": shorten(first["text"], 60)}] if first else []
    return out


def render(kind: str, arg: str, assistant) -> str:
    if kind == "ask":
        question = json.loads(arg)
        return f"$ qa ask {arg}\n{assistant.ask(question).to_text()}\n"
    body = json.loads(arg)
    answer = assistant.ask(body["question"], top_k=body.get("top_k")).to_dict()
    return json.dumps(api_view(answer), ensure_ascii=False, indent=2) + "\n"


def regenerate(text: str, assistant) -> str:
    def sub(m: re.Match) -> str:
        return m.group(1) + render(m.group(2), m.group(3), assistant) + m.group(6)

    return EXAMPLE.sub(sub, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="rewrite README.md in place")
    args = p.parse_args()
    from qa.engine import Assistant

    assistant = Assistant.load(corpus=ROOT / "seeds")
    text = README.read_text(encoding="utf-8")
    new = regenerate(text, assistant)
    if args.write:
        README.write_text(new, encoding="utf-8")
        print(f"wrote {README}")
    else:
        for m in EXAMPLE.finditer(new):
            print(m.group(0), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
