"""Helpers shared by make_assets.py and the benchmark zoo: Fashion-MNIST I/O, glyph rendering,
and the small TorchScript networks that follow the modeldock model contract."""
