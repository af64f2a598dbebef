"""The compression core: pure torch/transformers/safetensors, no web, SQL or Celery.

    from workers.compression.engine import CompressionSpec, compress
    from workers.compression.artifacts import save_compressed, load_compressed

Submodules are imported explicitly so that `core.macs` stays torch-free.
"""
