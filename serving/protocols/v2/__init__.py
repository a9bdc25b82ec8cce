"""The Open Inference Protocol (KServe v2) with Triton's binary tensor, model configuration and statistics extensions."""
