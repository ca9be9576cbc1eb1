"""Volumes (Z, Y, X): checked without loading them whole, embedded slice by slice, objects
propagated through z and segmented automatically per slice, merged across z with micro_sam."""
