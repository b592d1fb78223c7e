"""The torch twins of pipeline stages (GPU path, or torch on CPU to check them against the onnxruntime path)."""
