"""report.html: an evaluation as one page people open and share.

The figures of metrics.json, the accuracy–coverage (risk–coverage) plot, and every wrong
answer and wrong abstention with its question, the expected answers, what was answered
and the quoted passage (the quote marked in it, the answer phrase in bold), searchable.
Self-contained: the plot is inlined as a data URI, the style and the search script are
inline, and nothing is fetched from the network. All question and document text is
HTML-escaped.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from qa.evaluation.run import SUMMARY_KEYS, Question, fmt, run_line

EXTRA_KEYS = ("squad_em_answerable", "squad_f1_answerable", "threshold")
KINDS = ("wrong answer", "wrong abstention", "answered, should abstain")

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#1f2937}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e5e7eb;
padding:.35rem .5rem;text-align:left;vertical-align:top}
table.figures{width:auto}table.figures td:last-child{text-align:right;font-variant-numeric:
tabular-nums}
#misses td{font-size:.9rem}#misses td.passage{max-width:32rem;white-space:pre-line}
mark{background:#fef3c7}.muted{color:#6b7280;font-size:.85rem}
.controls{display:flex;gap:.5rem;align-items:center;margin:.5rem 0}
input[type=search]{flex:1;padding:.4rem;font:inherit}select{padding:.4rem;font:inherit}
img{max-width:100%}
"""

SCRIPT = """
(function () {
  var box = document.getElementById("search"), kind = document.getElementById("kind");
  var count = document.getElementById("count");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#misses tbody tr"));
  function filter() {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var show = (!kind.value || row.dataset.kind === kind.value) &&
        words.every(function (w) { return text.indexOf(w) >= 0; });
      row.hidden = !show;
      if (show) shown++;
    });
    count.textContent = shown + " of " + rows.length + " shown";
  }
  box.addEventListener("input", filter);
  kind.addEventListener("change", filter);
  filter();
})();
"""


def kind_of(row: dict) -> str | None:
    """What went wrong with a judged row, or None when it is right."""
    j = row["judgement"]
    if j["correct"]:
        return None
    if not j["answerable"]:
        return "answered, should abstain"
    return "wrong abstention" if j["abstained"] else "wrong answer"


def _marked(text: str, base: int, quote: tuple[int, int], span: tuple[int, int] | None
            ) -> str:
    """`text` (file offsets from `base`) escaped, the quote in <mark>, the answer phrase
    inside it in <strong>."""
    qs, qe = quote[0] - base, quote[1] - base
    inner = escape(text[qs:qe])
    if span is not None and qs <= span[0] - base < span[1] - base <= qe:
        a, b = span[0] - base, span[1] - base
        inner = (escape(text[qs:a]) + "<strong>" + escape(text[a:b]) + "</strong>"
                 + escape(text[b:qe]))
    return escape(text[:qs]) + "<mark>" + inner + "</mark>" + escape(text[qe:])


def passage_html(row: dict) -> str:
    """The quoted passage: the quote in the retrieved passage that holds it (else alone);
    for an abstention, the closest passage."""
    passages = row.get("passages") or []
    if row["citations"]:
        c = row["citations"][0]
        span = row.get("answer_span")
        span = (span["start"], span["end"]) if span else None
        where = escape(c["source"] + (f", p. {c['page']}" if c.get("page") else ""))
        home = next((p for p in passages if p["source"] == c["source"]
                     and p["start"] <= c["start"] and c["end"] <= p["end"]), None)
        text, base = (home["text"], home["start"]) if home else (c["quote"], c["start"])
        return (f'<div class="muted">{where}</div>'
                + _marked(text, base, (c["start"], c["end"]), span))
    if passages:
        p = passages[0]
        return (f'<div class="muted">closest passage: {escape(p["source"])}</div>'
                + escape(p["text"]))
    return '<span class="muted">(no passage retrieved)</span>'


def _miss_row(row: dict, question: Question, kind: str) -> str:
    j = row["judgement"]
    if question.answerable:
        expected = escape(" / ".join(question.answers))
        if question.sources:
            expected += f'<div class="muted">in {escape(", ".join(question.sources))}</div>'
    else:
        expected = '<span class="muted">abstain: the documents don\'t answer</span>'
    if j["abstained"]:
        answered = '<span class="muted">(abstained)</span>'
    else:
        answered = escape(j.get("prediction") or row["answer"])
    answered += (f'<div class="muted">confidence {row["confidence"]:.2f} · EM '
                 f'{j.get("squad_em", 0):.0f} · F1 {j.get("squad_f1", 0):.2f}</div>')
    cells = [escape(question.id), escape(kind), escape(question.question), expected,
             answered]
    return (f'<tr data-kind="{escape(kind)}">' + "".join(f"<td>{c}</td>" for c in cells)
            + f'<td class="passage">{passage_html(row)}</td></tr>')


def render(rows: list[dict], questions: list[Question], metrics: dict, title: str,
           plot_png: bytes | None) -> str:
    """The page's HTML."""
    by_id = {q.id: q for q in questions}
    figures = "".join(f"<tr><td>{escape(k)}</td><td>{escape(fmt(metrics.get(k)))}</td></tr>"
                      for k in (*SUMMARY_KEYS, *EXTRA_KEYS) if k in metrics)
    stages = "".join(f"<tr><td>{s}</td><td>{metrics.get(f'{s}_p50_ms')}</td>"
                     f"<td>{metrics.get(f'{s}_p95_ms')}</td></tr>"
                     for s in ("encode", "retrieve", "answer", "total"))
    machine = metrics.get("machine") or {}
    about = (f"{metrics.get('questions')} questions ({metrics.get('unanswerable')} "
             f"unanswerable)" + (f"; {machine.get('cpu')}, {machine.get('isa')}, "
                                 f"{machine.get('cores')} cores" if machine else "")
             + (f"; answered on {run_line(metrics['run'])}" if metrics.get("run") else ""))
    missed = [(r, k) for r in rows if (k := kind_of(r))]
    missed.sort(key=lambda rk: (KINDS.index(rk[1]), -rk[0]["judgement"]["raw_confidence"]))
    body = "".join(_miss_row(r, by_id[r["id"]], k) for r, k in missed)
    plot = (f'<img alt="accuracy against coverage as the confidence threshold varies" '
            f'src="data:image/png;base64,{base64.b64encode(plot_png).decode()}">'
            if plot_png else '<p class="muted">(no plot)</p>')
    options = "".join(f"<option>{k}</option>" for k in KINDS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation: {escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>Evaluation: {escape(title)}</h1>
<p class="muted">{escape(about)}</p>
<h2>Figures</h2>
<table class="figures"><tbody>{figures}</tbody></table>
<h2>Latency per stage (ms)</h2>
<table class="figures"><thead><tr><th>stage</th><th>p50</th><th>p95</th></tr></thead>
<tbody>{stages}</tbody></table>
<h2>Accuracy against coverage</h2>
<p>Each point is a confidence threshold: the share of questions answered, and how many of
those answers are right (risk is one minus that). The red dot is the threshold in use.</p>
{plot}
<h2>Wrong answers and wrong abstentions ({len(missed)})</h2>
<div class="controls"><input type="search" id="search"
placeholder="Search questions, answers and passages"><select id="kind">
<option value="">every kind</option>{options}</select><span id="count" class="muted"></span>
</div>
<table id="misses"><thead><tr><th>id</th><th>kind</th><th>question</th><th>expected</th>
<th>answered</th><th>quoted passage</th></tr></thead><tbody>{body}</tbody></table>
<script>{SCRIPT}</script>
</body></html>
"""


def write_html(rows: list[dict], questions: list[Question], metrics: dict, out: Path,
               title: str) -> Path:
    """Write `out/report.html` (with `out/coverage.png` inlined, when there is one)."""
    plot = out / "coverage.png"
    path = out / "report.html"
    path.write_text(render(rows, questions, metrics, title,
                           plot.read_bytes() if plot.is_file() else None), encoding="utf-8")
    return path
