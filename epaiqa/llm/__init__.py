"""Large multimodal model clients: the API providers, OpenAI-compatible servers and local models, one layer."""
