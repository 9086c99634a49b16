"""Data: reading files, tasks (prompts, gold responses, scorers) and token batches."""
