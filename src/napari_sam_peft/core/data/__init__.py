"""Data on disk: the annotation store (append-only, crash-safe), image files and sample data.

``store`` is the operations, ``store_folder`` the files and journal, ``snapshot`` what a
store holds at one moment. Imports nothing of core but the base modules.
"""
