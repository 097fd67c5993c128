"""`make bench`: measured, not asserted. Every number is printed next to a baseline measured in the same run."""
