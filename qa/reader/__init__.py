"""The reading model at answer time: tokenizes a question with a window of sentences and
scores each sentence and the answer phrase (`runtime.Reader`), on exact integer arithmetic
(`ExactNet`) or ONNX Runtime, without torch. Training it is `qa.training`'s job.
"""

__all__ = ["runtime"]
