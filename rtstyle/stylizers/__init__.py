"""Frames in, frames out: the stylizer protocol and its pending batches (`base`), the torch stylizer
(`torch`), the lean numpy/ONNX Runtime stylizer (`lean`) and its tiles (`tiles`), styles along a
timeline (`schedule`), and the factory that picks and builds one (`factory`). Nothing is imported
here: importing one stylizer never pulls in another's dependencies (torch)."""
