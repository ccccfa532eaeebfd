"""The chat page (Gradio), mounted on the API app by `qa serve` through the entry point
`cited_qa.ui: chat = ui.app:mount`. This package depends on `qa`; `qa` never imports it."""
