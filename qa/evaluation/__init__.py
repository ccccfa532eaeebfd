"""Evaluation: how far to trust the answers (`qa eval`).

- `run`: question sets read, every question judged (`judge`), per-question rows and the
  summary (`summarize`).
- `measures`: every figure of the summary as a small named function over the rows, and
  the risk–coverage curve.
- `trec`: the retrieval as a TREC run file and the gold sources as qrels (`--run-file`).
- `squad`: SQuAD's answer normalisation, exact match and F1.
- `squad_sets`: SQuAD 1.1/2.0 files as question sets with their own corpus.
- `machine`: the CPU a figure was measured on.
- `report_html`: report.html.
- `command`: `qa eval` itself: read, answer (here or on Ray), write the outputs.
"""

__all__ = ["command", "machine", "measures", "report_html", "run", "squad", "squad_sets",
           "trec"]
