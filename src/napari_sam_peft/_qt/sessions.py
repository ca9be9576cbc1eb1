"""Old name of :mod:`.viewer_session`, kept until the Finetune widget imports from there."""

from napari_sam_peft._qt.viewer_session import default_store_path, session_for  # noqa: F401
