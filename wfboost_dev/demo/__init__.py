"""`make run`: the main job on an embedded default, no cluster needed."""
