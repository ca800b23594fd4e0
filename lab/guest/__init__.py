"""Programs the lab copies into guests (they run there, with the guest's python3)."""
