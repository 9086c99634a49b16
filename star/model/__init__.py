"""The model: loading the base LLM, LoRA (attach, dropout, save/load), forward passes, training."""
