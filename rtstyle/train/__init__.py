"""Training style adapters: data, loss networks, teachers and the training loop."""
