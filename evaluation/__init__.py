"""Evaluation of the pipeline against ground truth: metrics and the development-set benchmark (not on the product path)."""
