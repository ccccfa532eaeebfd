"""The reader's network for training and export: the base transformer (MiniLM, cut to
`layers`) with the reader's two heads, start/end/in-answer-sentence per token and
no-answer from [CLS]. At answer time the same weights run without torch
(`qa.reader.runtime`).
"""

from __future__ import annotations

from embeddings import lazy
from embeddings.onnx_export import model_folder, transformer_folder


def build_net(base: str, layers: int | None, pretrained: bool = True):
    """The base transformer (cut to `layers`) with the reader's two heads; with
    `pretrained=False` only the base's config is read (the weights come from elsewhere,
    e.g. `--init`)."""
    torch = lazy.torch()
    transformers = lazy.load("transformers")
    AutoConfig, AutoModel = transformers.AutoConfig, transformers.AutoModel

    source = transformer_folder(model_folder(base))

    class ReaderNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if pretrained:
                self.bert = AutoModel.from_pretrained(str(source), attn_implementation="eager")
            else:
                config = AutoConfig.from_pretrained(str(source))
                config._attn_implementation = "eager"
                self.bert = AutoModel.from_config(config)
            if layers is not None and layers < len(self.bert.encoder.layer):
                self.bert.encoder.layer = self.bert.encoder.layer[:layers]
                self.bert.config.num_hidden_layers = layers
            hidden = self.bert.config.hidden_size
            self.tokens = torch.nn.Linear(hidden, 3)  # start, end, in-answer-sentence
            self.null = torch.nn.Linear(hidden, 1)  # from [CLS]: no answer in the window

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            return self.tokens(h), self.null(h[:, 0]).squeeze(-1)

    return ReaderNet(), source
