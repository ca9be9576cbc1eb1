"""Reference implementations that tests compare with (copied from other projects, each file says whence)."""
