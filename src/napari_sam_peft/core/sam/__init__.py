"""SAM models: encoder families and their architectures, building and loading checkpoints, devices.

``encoder_family`` is the protocol every image encoder implements and ``vit`` is SAM's ViT
(vit_b/l/h and the small demo and tiny models); ``registry`` lists the families and named
models. ``stages`` runs an encoder stage by stage (for the frozen-prefix cache) and
``preprocessing`` turns an image into the encoder's input. Only ``internals``
calls micro_sam's private functions. Imports nothing else of core but the base modules.
"""
