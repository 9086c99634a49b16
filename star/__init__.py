"""STAR: active learning around LoRA fine-tuning (dynamic uncertainty, MC dropout, L2 on B)."""

__version__ = "0.1.0"
