"""Annotating an image: images, prompts, embeddings, automatic segmentation, commits and undo.

The Qt-free work behind the Segment widget and the session: ``images`` checks what an image
is, ``embeddings`` caches micro_sam's embeddings, ``prompting`` and ``automatic`` segment,
``commits`` and ``recording`` turn masks into committed objects and store records, and
``stage_inputs`` keeps each image's input to the first encoder stage that trains.
Imports sam, peft and data.
"""
