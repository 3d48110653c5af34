"""Thin QgsProcessingAlgorithm wrappers over ``core``: parameters in, core call, outputs out."""
