"""Answering: from the retrieved passages to the cited answer or the abstention.

- `features`: the signals of a candidate sentence, one named table (`FEATURES`).
- `calibration`: the fitted models (`calibration.json`), the logistic fit and the
  plateau threshold.
- `ranker`: every sentence of the best passages as a `Candidate`, scored and ordered.
- `reading`: the reader (`qa.reader`) re-reads the best candidates; the stacked model
  orders them and gives the confidence.
- `answer`: `Answer` and `Citation`: the quote verbatim with its offsets, or the
  abstention (`compose`).
"""

__all__ = ["answer", "calibration", "features", "ranker", "reading"]
