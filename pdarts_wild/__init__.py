"""pdarts-wild: differentiable architecture search on today's PyTorch."""
