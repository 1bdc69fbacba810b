"""Demonstrations: scripted experts, teleoperation and HDF5 datasets (robomimic layout)."""
