"""Training the reader (`qa reader windows|train|export`): offline only, never on the
answer path; the modules that need torch and transformers get them from
`embeddings.lazy`.

- `data`: `Record`s (question, paragraph, answer) and the windows cut from them.
- `perturb`: unanswerable questions made from answerable ones, checked against their
  paragraph.
- `pool`: windows as the product reads them (its own index, retrieval and ranker).
- `windows`: one run's windows per epoch, built in parallel processes.
- `net`: the network (base transformer and the reader's heads).
- `state`: bf16 detection, starting weights, resumable checkpoints, random streams.
- `loop`: `TrainConfig` and `train`: the training loop.
- `export`: ONNX (fp32, int8) and the exact 7-bit weights, the checks and the model card.
"""

__all__ = ["data", "export", "loop", "net", "perturb", "pool", "state", "windows"]
