"""Evaluation with the paper's interactive protocol, and the one report every front end shows.

``interactive`` measures mSA for point, box and iterative corrections; ``report`` is the
base-versus-adapter table the CLI, the Finetune widget and the demo print.
"""
