"""The admission server and the offline review pipeline."""
