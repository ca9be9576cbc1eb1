"""Sharing a finetuned model: an adapter merged into its base model, as micro_sam's checkpoint or a
bioimage.io model package."""
