"""Model compression: post-training quantization (PTQ), quantization-aware training, pruning."""
