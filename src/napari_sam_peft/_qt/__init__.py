"""The Qt side: napari dock widgets. Thin: they call the session and core, and show results."""
